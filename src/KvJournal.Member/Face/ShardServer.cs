using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;

namespace KvJournal.Member.Face;

/// <summary>What the face takes from the member's flags.</summary>
/// <param name="MaxTxnOps">--max-txn-ops.</param>
/// <param name="WatchFragmentAboveBytes">A watch response the client allowed to be fragmented is split above this size (etcd: request limit plus gRPC overhead).</param>
/// <param name="ScratchDir">Where a snapshot for a client is written before it is sent (in the data directory).</param>
/// <summary>The face's limits: txn size, watch fragments, scratch space, password cost, and the optional write throttle.</summary>
public sealed record ShardServerOptions(int MaxTxnOps, int WatchFragmentAboveBytes, string ScratchDir, int BcryptCost = PasswordHash.DefaultCost,
    double WritesPerSecond = 0, int MaxInFlightWrites = 0);

/// <summary>
/// The one public face of a shard: every etcd request, whichever wire it came on, is served here.
/// Each method takes the request, who makes it and a cancellation token, and returns etcd's
/// response or throws <see cref="EtcdException"/>. It owns request validation, the permission
/// checks of reads and admin calls (writes are checked where they apply, against the auth state
/// they apply after, as etcd's authApplierV3 does), the quota, the linearizable wait, the store's
/// lock, the one way to propose an entry, and the response header. Split by API family into
/// partial files (Kv, Lease, Auth, Maintenance, Cluster, Watch, Lock, Election).
/// </summary>
public sealed partial class ShardServer(Shard shard, ShardServerOptions limits)
{
    /// <summary>KvJournal has no raft; the term in every header is the journal epoch, 1 until epochs exist.</summary>
    public const ulong Term = 1;

    /// <summary>The shard behind the face, for health checks and metrics.</summary>
    public Shard Shard => shard;

    /// <summary>The shard's write limits, when it has any (--shard-write-rate, --shard-max-inflight-writes).</summary>
    public WriteThrottle? Throttle { get; } = limits.WritesPerSecond > 0 || limits.MaxInFlightWrites > 0
        ? new WriteThrottle(limits.WritesPerSecond, limits.MaxInFlightWrites, shard.Time) : null;

    /// <summary>The latest backup of this shard (--backup-dir), for /metrics.</summary>
    public Backups.BackupStatus Backups { get; } = new();

    /// <summary>Whether auth is on: with it off no adapter needs to read credentials at all.</summary>
    public bool AuthEnabled => shard.Auth.Enabled;

    /// <summary>Whether the journal is reachable (etcd: the member has a leader).</summary>
    public bool HasLeader => shard.JournalReachable;

    /// <summary>Fills the member-level fields of a header as etcd does; the revision was set where the request was applied or read.</summary>
    public ResponseHeader Fill(ResponseHeader? header)
    {
        header ??= new ResponseHeader();
        header.ClusterId = shard.ClusterId;
        header.MemberId = shard.MemberId;
        header.RaftTerm = Term;
        return header;
    }

    /// <summary>
    /// The user a request is made as (etcd's AuthInfoFromCtx): the token's, else the certificate's
    /// common name, else nobody (""). An unknown or expired token is "invalid auth token".
    /// </summary>
    private string UserOf(CallerIdentity who)
    {
        if (!shard.Auth.Enabled) return "";
        if (who.Token is { } token)
        {
            if (token.StartsWith("Bearer ", StringComparison.Ordinal)) token = token["Bearer ".Length..];
            if (!shard.Auth.Tokens.TryGetUser(token, shard.NowUnixMs(), out var user)) throw new EtcdException(EtcdError.InvalidAuthToken);
            return user;
        }
        return who.CertificateName ?? "";
    }

    private static void Ok(EtcdError error)
    {
        if (error != EtcdError.None) throw new EtcdException(error);
    }

    /// <summary>Throws unless the request names a user at all (etcd's requireAuthInfo).</summary>
    private void RequireUser(string user)
    {
        if (shard.Auth.Enabled && user.Length == 0) throw new EtcdException(EtcdError.UserEmpty);
    }

    private void CheckRead(string user, ByteString key, ByteString rangeEnd) =>
        Check(user, (key, rangeEnd), static (auth, u, range) => auth.CheckRead(u, range.key, range.rangeEnd));

    private void CheckAdmin(string user) => Check(user, 0, static (auth, u, _) => auth.CheckAdmin(u));

    /// <summary>
    /// Runs a permission check against the applied auth state under the store's read lock. With
    /// auth off it returns at once: hot paths pass static lambdas, so nothing is allocated then.
    /// </summary>
    private void Check<TState>(string user, TState state, Func<AuthStore, string, TState, EtcdError> check)
    {
        if (!shard.Auth.Enabled) return;
        Ok(shard.Read(_ => check(shard.Auth, user, state)));
    }

    /// <summary>
    /// The one way to propose: the entry is stamped with the user it is made as (the applier checks
    /// that user's write permission), appended and applied; its response comes back (the caller
    /// fills the header) or etcd's error is thrown.
    /// </summary>
    private async Task<TResponse> ProposeAsync<TResponse>(string user, JournalEntry entry, CancellationToken cancellationToken) where TResponse : IMessage
    {
        var result = await ProposeEntryAsync(user, entry, cancellationToken).ConfigureAwait(false);
        Ok(result.Error);
        return (TResponse)result.Response!;
    }

    /// <summary>
    /// The same, for callers that act on the error themselves (a retried lease id or login). A
    /// client's write passes the shard's throttle first; a mirror's entries do not (they are the
    /// source's writes, already admitted there).
    /// </summary>
    private Task<ApplyResult> ProposeEntryAsync(string user, JournalEntry entry, CancellationToken cancellationToken)
    {
        entry.AuthUser = user;
        if (Throttle is null || entry.BodyCase is JournalEntry.BodyOneofCase.MirrorRevisions or JournalEntry.BodyOneofCase.MirrorCutOver)
            return shard.ProposeAsync(entry, cancellationToken);
        return ThrottledAsync(Throttle, entry, cancellationToken);
    }

    private async Task<ApplyResult> ThrottledAsync(WriteThrottle throttle, JournalEntry entry, CancellationToken cancellationToken)
    {
        throttle.Enter();
        try
        {
            return await shard.ProposeAsync(entry, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            throttle.Exit();
        }
    }

    /// <summary>A consistent read under the store's read lock, after the linearizable wait unless serializable.</summary>
    private async Task<T> ReadAsync<T>(bool serializable, Func<Storage.Mvcc.MvccStore.MvccTxn, T> read, CancellationToken cancellationToken)
    {
        if (!serializable) await shard.WaitLinearizableAsync(cancellationToken).ConfigureAwait(false);
        return shard.Read(read);
    }

    private long CurrentRevision() => shard.Read(txn => txn.ReadRevision);
}
