using System.Security.Cryptography;
using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Leases;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Server.Api.Auth;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Server.Api.Lease;

/// <summary>
/// etcd's Lease service. Grant, revoke and every keep-alive are journal entries stamped with this
/// member's clock, so all members agree on deadlines; time-to-live and the lease list are read
/// from the applied lease table.
/// </summary>
[BindServiceMethod(typeof(LeaseService), nameof(BindService))]
public sealed class LeaseService(Shard shard, ServerOptions options) : Etcdserverpb.Lease.LeaseBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Lease.LeaseBase? service) =>
        Etcdserverpb.Lease.BindService(new UnparsableRequests.Binder(binder), service!);

    public override async Task<LeaseGrantResponse> LeaseGrant(LeaseGrantRequest request, ServerCallContext context)
    {
        if (request.TTL > Lessor.MaxTtlSeconds) EtcdErrors.Throw(EtcdError.LeaseTtlTooLarge);
        Caller.Of(context, shard, options).RequireUser();
        var quota = await shard.CheckQuotaAsync(request, context.CancellationToken).ConfigureAwait(false);
        if (quota != EtcdError.None) EtcdErrors.Throw(quota);
        var response = await GrantAsync(shard, request.ID, request.TTL, context.CancellationToken).ConfigureAwait(false);
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    /// <summary>Grants a lease through the journal; id 0 = a server-chosen id (one that happens to exist is drawn again).</summary>
    public static async Task<LeaseGrantResponse> GrantAsync(Shard shard, long id, long ttlSeconds, CancellationToken cancellationToken)
    {
        for (int attempt = 0; ; attempt++)
        {
            long leaseId = id != 0 ? id : RandomLeaseId();
            var entry = new JournalEntry { LeaseGrant = new Protos.Journal.LeaseGrant { Id = leaseId, TtlSeconds = ttlSeconds, AtUnixMs = shard.NowUnixMs() } };
            var result = await shard.ProposeAsync(entry, cancellationToken).ConfigureAwait(false);
            if (result.Error == EtcdError.LeaseExists && id == 0 && attempt < 3) continue;
            if (result.Error != EtcdError.None) EtcdErrors.Throw(result.Error);
            return (LeaseGrantResponse)result.Response!;
        }
    }

    public override async Task<LeaseRevokeResponse> LeaseRevoke(LeaseRevokeRequest request, ServerCallContext context)
    {
        var caller = Caller.Of(context, shard, options);
        caller.RequireUser();
        var response = await caller.ProposeAsync<LeaseRevokeResponse>(new JournalEntry { LeaseRevoke = new Protos.Journal.LeaseRevoke { Id = request.ID } }, context.CancellationToken).ConfigureAwait(false);
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    /// <summary>
    /// Each request renews through the journal (batched with every other keep-alive of this
    /// member) and is answered, in order, with the TTL: 0 for an unknown or expired lease, as etcd.
    /// </summary>
    public override async Task LeaseKeepAlive(IAsyncStreamReader<LeaseKeepAliveRequest> requestStream, IServerStreamWriter<LeaseKeepAliveResponse> responseStream, ServerCallContext context)
    {
        var caller = Caller.Of(context, shard, options);
        while (await NextAsync(requestStream, context).ConfigureAwait(false))
        {
            var request = requestStream.Current;
            // etcd's checkLeaseRenew: a user, and write permission on the lease's keys.
            caller.RequireUser();
            caller.Check((shard.Leases, request.ID), static (auth, user, s) => AuthChecks.LeaseKeys(auth, s.Leases, user, s.ID, write: true));
            long ttl;
            try
            {
                ttl = await shard.Renewals.RenewAsync(request.ID, context.CancellationToken).ConfigureAwait(false);
            }
            catch (LeaseRenewalException ex)
            {
                EtcdErrors.Throw(ex.Error);
                throw;
            }
            var response = new LeaseKeepAliveResponse { Header = new ResponseHeader { Revision = shard.Store.CurrentRevision }, ID = request.ID, TTL = ttl };
            ResponseHeaders.Fill(response.Header, shard);
            await responseStream.WriteAsync(response, context.CancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The next keep-alive, or false once the client is done. etcd's KeepAliveOnce (and its
    /// benchmark) opens a stream per renewal and resets it after the answer; that reset ends the
    /// call quietly here instead of as an exception rethrown through every async frame above.
    /// </summary>
    private static async Task<bool> NextAsync(IAsyncStreamReader<LeaseKeepAliveRequest> requests, ServerCallContext context)
    {
        try
        {
            return await requests.MoveNext(context.CancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException || (ex is OperationCanceledException && context.CancellationToken.IsCancellationRequested))
        {
            return false;
        }
    }

    public override async Task<LeaseTimeToLiveResponse> LeaseTimeToLive(LeaseTimeToLiveRequest request, ServerCallContext context)
    {
        var caller = Caller.Of(context, shard, options);
        caller.RequireUser();
        caller.Check((shard.Leases, request.ID), static (auth, user, s) => AuthChecks.LeaseKeys(auth, s.Leases, user, s.ID, write: false));
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        long now = shard.NowUnixMs();
        var response = shard.Read(txn =>
        {
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
        });
        ResponseHeaders.Fill(response.Header, shard);
        return response;
    }

    public override async Task<LeaseLeasesResponse> LeaseLeases(LeaseLeasesRequest request, ServerCallContext context)
    {
        // etcd's checkLeaseLeases: an admin, or read permission on every key of every lease.
        var caller = Caller.Of(context, shard, options);
        caller.RequireUser();
        caller.Check(shard.Leases, static (auth, user, leases) =>
        {
            foreach (var lease in leases.All)
                if (AuthChecks.LeaseKeys(auth, leases, user, lease.Id, write: false) is var e && e != EtcdError.None) return e;
            return EtcdError.None;
        });
        await shard.WaitLinearizableAsync(context.CancellationToken).ConfigureAwait(false);
        var response = shard.Read(txn =>
        {
            var r = new LeaseLeasesResponse { Header = new ResponseHeader { Revision = txn.ReadRevision } };
            var ids = shard.Leases.All.Select(l => l.Id).ToArray();
            Array.Sort(ids);
            foreach (long id in ids) r.Leases.Add(new LeaseStatus { ID = id });
            return r;
        });
        ResponseHeaders.Fill(response.Header, shard);
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
