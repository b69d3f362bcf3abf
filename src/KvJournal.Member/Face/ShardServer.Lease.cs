using System.Security.Cryptography;
using Etcdserverpb;
using KvJournal.Member.Leases;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Member.Face;

// etcd's Lease service. Grant, revoke and every keep-alive are journal entries stamped with this
// member's clock, so all members agree on deadlines; time-to-live and the lease list are read from
// the applied lease table.
public sealed partial class ShardServer
{
    public async Task<LeaseGrantResponse> LeaseGrantAsync(LeaseGrantRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        if (request.TTL > Lessor.MaxTtlSeconds) throw new EtcdException(EtcdError.LeaseTtlTooLarge);
        string user = UserOf(who);
        RequireUser(user);
        Ok(await shard.CheckQuotaAsync(request, cancellationToken).ConfigureAwait(false));
        return await GrantAsync(user, request.ID, request.TTL, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Grants a lease through the journal; id 0 = a server-chosen id (one that happens to exist is drawn again).</summary>
    private async Task<LeaseGrantResponse> GrantAsync(string user, long id, long ttlSeconds, CancellationToken cancellationToken)
    {
        for (int attempt = 0; ; attempt++)
        {
            long leaseId = id != 0 ? id : RandomLeaseId();
            var entry = new JournalEntry { LeaseGrant = new Protos.Journal.LeaseGrant { Id = leaseId, TtlSeconds = ttlSeconds, AtUnixMs = shard.NowUnixMs() } };
            var result = await ProposeEntryAsync(user, entry, cancellationToken).ConfigureAwait(false);
            if (result.Error == EtcdError.LeaseExists && id == 0 && attempt < 3) continue;
            Ok(result.Error);
            var response = (LeaseGrantResponse)result.Response!;
            Fill(response.Header);
            return response;
        }
    }

    public async Task<LeaseRevokeResponse> LeaseRevokeAsync(LeaseRevokeRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        string user = UserOf(who);
        RequireUser(user);
        var response = await ProposeAsync<LeaseRevokeResponse>(user, new JournalEntry { LeaseRevoke = new Protos.Journal.LeaseRevoke { Id = request.ID } }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    /// <summary>
    /// One renewal of a keep-alive stream, through the journal (batched with every other keep-alive
    /// of this member), answered with the TTL: 0 for an unknown or expired lease, as etcd.
    /// </summary>
    public async Task<LeaseKeepAliveResponse> LeaseKeepAliveAsync(LeaseKeepAliveRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        // etcd's checkLeaseRenew: a user, and write permission on the lease's keys.
        string user = UserOf(who);
        RequireUser(user);
        Check(user, (shard.Leases, request.ID), static (auth, u, s) => AuthChecks.LeaseKeys(auth, s.Leases, u, s.ID, write: true));
        long ttl;
        try
        {
            ttl = await shard.Renewals.RenewAsync(request.ID, cancellationToken).ConfigureAwait(false);
        }
        catch (LeaseRenewalException ex)
        {
            throw new EtcdException(ex.Error);
        }
        return new LeaseKeepAliveResponse { Header = Fill(new ResponseHeader { Revision = shard.Store.CurrentRevision }), ID = request.ID, TTL = ttl };
    }

    public async Task<LeaseTimeToLiveResponse> LeaseTimeToLiveAsync(LeaseTimeToLiveRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        string user = UserOf(who);
        RequireUser(user);
        Check(user, (shard.Leases, request.ID), static (auth, u, s) => AuthChecks.LeaseKeys(auth, s.Leases, u, s.ID, write: false));
        var response = await ReadAsync(serializable: false, txn =>
        {
            long now = shard.NowUnixMs();
            var r = new LeaseTimeToLiveResponse { Header = new ResponseHeader { Revision = txn.ReadRevision }, ID = request.ID };
            var lease = shard.Leases.Get(request.ID);
            if (lease is null)
            {
                r.TTL = -1; // etcd answers an unknown lease with TTL -1, not an error
                return r;
            }
            // etcd truncates the remaining time to whole seconds.
            r.TTL = (lease.ExpiresAtUnixMs - now) / 1000;
            r.GrantedTTL = lease.TtlSeconds;
            if (request.Keys)
            {
                var keys = lease.AttachedKeys.ToArray();
                Array.Sort(keys, KeyBytes.Compare);
                r.Keys.AddRange(keys);
            }
            return r;
        }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    public async Task<LeaseLeasesResponse> LeaseLeasesAsync(LeaseLeasesRequest request, CallerIdentity who, CancellationToken cancellationToken)
    {
        // etcd's checkLeaseLeases: an admin, or read permission on every key of every lease.
        string user = UserOf(who);
        RequireUser(user);
        Check(user, shard.Leases, static (auth, u, leases) =>
        {
            foreach (var lease in leases.All)
                if (AuthChecks.LeaseKeys(auth, leases, u, lease.Id, write: false) is var e && e != EtcdError.None) return e;
            return EtcdError.None;
        });
        var response = await ReadAsync(serializable: false, txn =>
        {
            var r = new LeaseLeasesResponse { Header = new ResponseHeader { Revision = txn.ReadRevision } };
            var ids = shard.Leases.All.Select(l => l.Id).ToArray();
            Array.Sort(ids);
            foreach (long id in ids) r.Leases.Add(new LeaseStatus { ID = id });
            return r;
        }, cancellationToken).ConfigureAwait(false);
        Fill(response.Header);
        return response;
    }

    // Positive, non-zero, so it prints the same in every client (etcd's ids are positive too).
    private static long RandomLeaseId()
    {
        long id;
        do id = BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)) & long.MaxValue; while (id == 0);
        return id;
    }
}
