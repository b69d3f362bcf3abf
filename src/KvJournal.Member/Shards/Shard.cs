using System.Buffers;
using System.Security.Cryptography;
using KvJournal.Journal;
using KvJournal.Member.Leadership;
using KvJournal.Member.Leases;
using KvJournal.Member.Metrics;
using KvJournal.Member.Propose;
using KvJournal.Member.Reads;
using KvJournal.Member.Snapshots;
using KvJournal.Member.Tail;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;
using KvJournal.Storage.Snapshot;
using KvJournal.Storage.Watch;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvJournal.Member.Shards;

/// <summary>Who this member is, the limits it enforces on proposals, and how often watchers hear progress.</summary>
public sealed record ShardOptions(ulong MemberId, int MaxRequestBytes, TimeSpan ProgressNotifyInterval)
{
    /// <summary>The keyspace's quota (etcd's --quota-backend-bytes) in <see cref="Shard.DbSize"/> bytes.</summary>
    public long QuotaBytes { get; init; } = 2L * 1024 * 1024 * 1024;

    /// <summary>The keyspace's name ("default" for the main one); labels its metrics.</summary>
    public string Name { get; init; } = "default";

    /// <summary>Announced on the journal at open, for Cluster.MemberList on every member.</summary>
    public string MemberName { get; init; } = "default";
    public IReadOnlyList<string> ClientUrls { get; init; } = [];

    /// <summary>The peer URLs MemberList reports for this member.</summary>
    public IReadOnlyList<string> PeerUrls { get; init; } = [];

    /// <summary>The clock of lease deadlines, token lifetimes and the background duties' timers (a fake one in tests).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Entries applied between state snapshots (etcd's --snapshot-count); 0 = never.</summary>
    public long SnapshotCount { get; init; } = 100_000;

    /// <summary>How long a simple auth token lives without use (etcd's --auth-token-ttl).</summary>
    public TimeSpan AuthTokenTtl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Where the shard's parts log (apply faults, the reason apply stopped).</summary>
    public ILoggerFactory Logs { get; init; } = NullLoggerFactory.Instance;

}

/// <summary>
/// One etcd keyspace served by this member: its journal, store and applier. Writes are proposed
/// to the journal and answered once applied; reads are served from the store, linearizable ones
/// after the member caught up with what the journal had made durable when the read arrived.
/// Outside the member only opening and closing it are public: requests go through its face,
/// <see cref="Face.ShardServer"/>, which owns the store's lock and the one way to propose.
/// </summary>
public sealed class Shard
{
    private readonly IJournal _journal;
    private readonly ShardOptions _options;
    private readonly KvApplier _applier;
    private readonly PendingProposals _pending = new();
    private readonly AppliedPosition _applied = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly ShardTailer _tailer;
    private Task _tailing = Task.CompletedTask;
    private Task _expiring = Task.CompletedTask;
    private Task _heartbeating = Task.CompletedTask;
    private Task _snapshotting = Task.CompletedTask;

    private Shard(IJournal journal, ShardOptions options)
    {
        _journal = journal;
        _options = options;
        Store = new MvccStore();
        Leases = new Lessor();
        Store.LeaseTracker = Leases;
        Txns = new TxnExecutor(Leases);
        _applier = new KvApplier(Store, Txns, new LeaseExecutor(Store, Leases))
        {
            Auth = new AuthStore(new SimpleTokens(options.AuthTokenTtl)),
            LeaseTable = Leases,
            Clock = () => options.Time.GetUtcNow().ToUnixTimeMilliseconds(),
        };
        Watches = new WatchHub(Store, options.ProgressNotifyInterval, options.Time);
        Renewals = new LeaseRenewals(this);
        _tailer = new ShardTailer(journal, Store, _applier, Watches, _pending, _applied, options.MemberId,
            options.Logs.CreateLogger("KvJournal.Apply"));
    }

    internal MvccStore Store { get; }

    /// <summary>Users, roles and tokens of this keyspace; read it under the store's lock (<see cref="Read{T}"/>).</summary>
    internal AuthStore Auth => _applier.Auth;

    /// <summary>The shard's lease table; read it under the store's lock (<see cref="Read{T}"/>).</summary>
    internal Lessor Leases { get; }

    /// <summary>Keep-alives of this member's clients, journaled in batches.</summary>
    internal LeaseRenewals Renewals { get; }

    /// <summary>The shard's watchers, fed by the applier.</summary>
    internal WatchHub Watches { get; }

    /// <summary>Txn semantics over this shard's store and lessor.</summary>
    internal TxnExecutor Txns { get; }

    internal ulong MemberId => _options.MemberId;

    /// <summary>
    /// The wall clock lease and login entries carry, in Unix milliseconds. Deadlines are wall-clock
    /// times so they survive a restart and mean the same on every member; their precision is bounded
    /// by the clock skew between the members that renew and expire a lease (NTP keeps that to ms).
    /// </summary>
    /// <summary>Whether this keyspace mirrors an etcd cluster (before its cut-over): duties that change it wait.</summary>
    internal bool Mirroring => Applier.MirrorSource is not null;

    internal long NowUnixMs() => _options.Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>The clock the background duties' timers run on.</summary>
    internal TimeProvider Time => _options.Time;

    internal ulong ClusterId => _applier.ClusterId;

    /// <summary>
    /// Active alarms; read them under the store's lock (<see cref="Read{T}"/>). Besides the
    /// journaled ones, this member's NOSPACE while its journal's disk is full: that one cannot be
    /// journaled, and clears itself once the journal writes again.
    /// </summary>
    internal IReadOnlyCollection<Etcdserverpb.AlarmMember> Alarms => _journal.DiskFull ? WithDiskFull(_applier.Alarms) : _applier.Alarms;

    private List<Etcdserverpb.AlarmMember> WithDiskFull(IReadOnlyCollection<Etcdserverpb.AlarmMember> journaled)
    {
        var alarms = new List<Etcdserverpb.AlarmMember>(journaled);
        if (!alarms.Exists(a => a.MemberID == MemberId && a.Alarm == Etcdserverpb.AlarmType.Nospace))
        {
            alarms.Add(new Etcdserverpb.AlarmMember { MemberID = MemberId, Alarm = Etcdserverpb.AlarmType.Nospace });
            alarms.Sort((x, y) => (x.MemberID, (int)x.Alarm).CompareTo((y.MemberID, (int)y.Alarm)));
        }
        return alarms;
    }

    /// <summary>Members announced on this journal, by id; read it under the store's lock (<see cref="Read{T}"/>).</summary>
    internal IReadOnlyDictionary<ulong, MemberAnnounce> Members => _applier.Members;

    /// <summary>
    /// The size that counts against the quota and that Status and /metrics report as dbSize: the
    /// bytes of keys and values of every retained version, plus a fixed 4 KiB so an empty keyspace
    /// reports a size above zero as etcd's empty database does (etcdctl divides by it).
    /// Compaction lowers it at once. Read it under the store's lock or accept a moment's staleness.
    /// </summary>
    internal long DbSize => Store.SizeBytes + 4096;

    internal long QuotaBytes => _options.QuotaBytes;

    public string Name => _options.Name;

    /// <summary>
    /// etcd's quota check before proposing a write that adds data: when the keyspace plus the
    /// request would pass the quota, the NOSPACE alarm is raised (through the journal, once) and
    /// the write is refused. Reads and deletes never come here.
    /// </summary>
    internal async Task<EtcdError> CheckQuotaAsync(Google.Protobuf.IMessage request, CancellationToken cancellationToken)
    {
        if (DbSize + request.CalculateSize() <= _options.QuotaBytes) return EtcdError.None;
        bool raised = Read(_ => Alarms.Any(a => a.MemberID == MemberId && a.Alarm == Etcdserverpb.AlarmType.Nospace));
        if (!raised)
        {
            var alarm = new Etcdserverpb.AlarmRequest { Action = Etcdserverpb.AlarmRequest.Types.AlarmAction.Activate, MemberID = MemberId, Alarm = Etcdserverpb.AlarmType.Nospace };
            await ProposeAsync(new JournalEntry { Alarm = alarm }, cancellationToken).ConfigureAwait(false);
        }
        return EtcdError.NoSpace;
    }

    /// <summary>Time from handing an entry to the journal to its being durable.</summary>
    internal LatencyHistogram AppendLatency { get; } = new();

    /// <summary>The journal's last durable position (-1 when empty): what linearizable reads wait for.</summary>
    internal long CommittedPosition => _journal.LastDurablePosition;

    /// <summary>Entries applied since this member started.</summary>
    internal long AppliedEntries => _tailer.AppliedEntries;

    /// <summary>The position of the snapshot this member started from (-1 when it replayed the whole journal).</summary>
    internal long StartedFromSnapshot { get; private set; } = -1;

    internal IJournal Journal => _journal;

    internal KvApplier Applier => _applier;

    internal long SnapshotCount => _options.SnapshotCount;

    /// <summary>Where the shard's parts log.</summary>
    internal ILoggerFactory Logs => _options.Logs;

    /// <summary>Position of the last applied journal entry (-1 before the first).</summary>
    internal long AppliedPosition => _applied.Value;

    /// <summary>The apply failure that stopped this shard, if one did.</summary>
    internal Exception? Failure => _tailer.Failure;

    /// <summary>Completes once the shard stopped applying: failed, or closed.</summary>
    internal Task ApplyStopped => _tailer.Stopped;

    /// <summary>
    /// Opens a shard on a journal: replays every retained entry, and bootstraps an empty journal
    /// with a fresh cluster id. Returns once the store reflects everything durable at open.
    /// </summary>
    public static async Task<Shard> OpenAsync(IJournal journal, ShardOptions options, CancellationToken cancellationToken)
    {
        var shard = new Shard(journal, options);
        await shard.RestoreLatestSnapshotAsync(cancellationToken).ConfigureAwait(false);
        shard._tailing = Task.Run(() => shard._tailer.RunAsync(shard._stopping.Token), CancellationToken.None);
        await shard.CatchUpAsync(cancellationToken).ConfigureAwait(false);
        if (shard.ClusterId == 0)
        {
            var bootstrap = new JournalEntry { Bootstrap = new Bootstrap { ClusterId = RandomNonZero() } };
            var result = await shard.ProposeAsync(bootstrap, cancellationToken).ConfigureAwait(false);
            if (result.Error != EtcdError.None) throw new JournalUnavailableException($"cannot bootstrap the journal: {result.Error}");
        }
        // Announced at every start: the first heartbeat (MemberHeartbeat sends the rest).
        var announce = new MemberAnnounce { MemberId = options.MemberId, Name = options.MemberName, ClientUrls = { options.ClientUrls }, PeerUrls = { options.PeerUrls } };
        var announced = await shard.ProposeAsync(new JournalEntry { MemberAnnounce = announce }, cancellationToken).ConfigureAwait(false);
        if (announced.Error != EtcdError.None) throw new JournalUnavailableException($"cannot announce this member on the journal: {announced.Error}");
        var heartbeat = new MemberHeartbeat(shard, announce);
        shard._heartbeating = Task.Run(() => heartbeat.RunAsync(shard._stopping.Token), CancellationToken.None);
        var expiry = new LeaseExpiry(shard);
        shard._expiring = Task.Run(() => expiry.RunAsync(shard._stopping.Token), CancellationToken.None);
        if (options.SnapshotCount > 0)
        {
            var snapshots = new StateSnapshots(shard);
            shard._snapshotting = Task.Run(() => snapshots.RunAsync(shard._stopping.Token), CancellationToken.None);
        }
        return shard;
    }

    // Start-up = the newest state snapshot the journal keeps + the journal after it. A damaged
    // snapshot (its SHA-256 trailer) is passed over for the one before it, which the journal keeps
    // for this and is not trimmed below; with none left the member refuses to start.
    private async Task RestoreLatestSnapshotAsync(CancellationToken cancellationToken)
    {
        var logger = _options.Logs.CreateLogger("KvJournal.Snapshot");
        long below = long.MaxValue;
        string? damaged = null;
        while (await _journal.GetSnapshotAsync(below, cancellationToken).ConfigureAwait(false) is { } snapshot)
        {
            await using (snapshot.ConfigureAwait(false))
            {
                string file = await StateSnapshots.DownloadAsync(snapshot.Data, cancellationToken).ConfigureAwait(false);
                try
                {
                    // Verified before anything is loaded, so passing over it leaves the store empty.
                    StateSnapshot.Verify(file);
                }
                catch (InvalidDataException ex)
                {
                    File.Delete(file);
                    damaged = $"state snapshot {snapshot.Source} is damaged: {ex.Message}";
                    if (logger.IsEnabled(LogLevel.Error)) logger.LogError("{Problem}; trying the snapshot before it", damaged);
                    below = snapshot.Position;
                    continue;
                }
                try
                {
                    long position = StateSnapshot.Read(file, Store, Leases, _applier);
                    Watches.Restored();
                    _applied.Advance(position);
                    StartedFromSnapshot = position;
                    // Position -1: a keyspace imported from etcd (kvjournal snapshot restore), before the first entry.
                    if (position < 0 && logger.IsEnabled(LogLevel.Information))
                        logger.LogInformation("starting from the keyspace imported from etcd ({Source}): revision {Revision}, compacted at {Compacted}", snapshot.Source, Store.CurrentRevision, Store.CompactRevision);
                    return;
                }
                finally
                {
                    File.Delete(file);
                }
            }
        }
        if (damaged is not null) throw new JournalDamagedException($"{damaged}, and no older snapshot is left to start from");
    }

    /// <summary>
    /// Appends <paramref name="entry"/> to the journal and completes with the result of applying
    /// it. The entry's member and request ids are filled here.
    /// </summary>
    internal async Task<ApplyResult> ProposeAsync(JournalEntry entry, CancellationToken cancellationToken)
    {
        // Fail-stop: a member that stopped applying appends nothing more to a journal others apply.
        if (_pending.Register() is not var (id, applied)) return ApplyResult.Fail(_pending.StoppedWith);
        entry.MemberId = _options.MemberId;
        entry.RequestId = id;
        int length = JournalEntryCodec.EncodeRented(entry, out byte[] bytes);
        if (length > _options.MaxRequestBytes)
        {
            ArrayPool<byte>.Shared.Return(bytes);
            _pending.Abandon(id);
            return ApplyResult.Fail(EtcdError.RequestTooLarge);
        }
        try
        {
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            await _journal.AppendAsync(bytes.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            AppendLatency.Observe(System.Diagnostics.Stopwatch.GetElapsedTime(started));
            // Only once appended: a journal may still hold the bytes of an append that failed or
            // whose caller gave up (NATS queues them for its publisher), so those are left to the GC.
            ArrayPool<byte>.Shared.Return(bytes);
        }
        catch (JournalUnavailableException)
        {
            _pending.Abandon(id);
            return ApplyResult.Fail(EtcdError.JournalUnavailable);
        }
        catch (OperationCanceledException)
        {
            _pending.Abandon(id);
            throw;
        }
        return await applied.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits until this member applied everything the journal had made durable on entry (the read
    /// index comes from the journal itself, so writes through other members count). Throws
    /// <see cref="JournalUnavailableException"/> when the journal cannot say.
    /// </summary>
    internal async Task WaitLinearizableAsync(CancellationToken cancellationToken)
    {
        long index = await _journal.ReadIndexAsync(cancellationToken).ConfigureAwait(false);
        await _applied.WaitForAsync(index, cancellationToken).ConfigureAwait(false);
    }

    // Start-up: apply everything the journal held at open, saying every few seconds how far it got
    // (a large journal takes a while; a stalled one must be visible in the log).
    private async Task CatchUpAsync(CancellationToken cancellationToken)
    {
        var logger = _options.Logs.CreateLogger("KvJournal.Apply");
        long index = await _journal.ReadIndexAsync(cancellationToken).ConfigureAwait(false);
        var caughtUp = _applied.WaitForAsync(index, cancellationToken);
        while (await Task.WhenAny(caughtUp, Task.Delay(CatchUpReport, cancellationToken)).ConfigureAwait(false) != caughtUp)
        {
            if (logger.IsEnabled(LogLevel.Information))
                logger.LogInformation("catching up with the journal: applied up to {Applied}, the journal's tail is {Tail}", _journal.Describe(_applied.Value), _journal.Describe(index));
        }
        await caughtUp.ConfigureAwait(false);
    }

    private static readonly TimeSpan CatchUpReport = TimeSpan.FromSeconds(5);

    /// <summary>Completes once this member applied an entry past <paramref name="position"/> (a recipe re-checks then).</summary>
    internal Task WaitAppliedBeyondAsync(long position, CancellationToken cancellationToken) =>
        _applied.WaitForAsync(position + 1, cancellationToken);

    /// <summary>
    /// The member reported as leader: there is none (the journal orders writes and every member
    /// takes them), but etcd's tools expect one stable id from the member list, the same on every
    /// member. It is the lowest announced member id, and 0 while the journal is unreachable, as etcd
    /// reports 0 without a leader.
    /// </summary>
    internal ulong LeaderId => JournalReachable ? Read(_ => _applier.LeaderId is var leader and not 0 ? leader : MemberId) : 0;

    /// <summary>Whether the journal answered lately; with it gone, clients that require a leader are refused.</summary>
    internal bool JournalReachable => _journal.IsReachable && Failure is null;

    /// <summary>Runs <paramref name="read"/> on a consistent read-only view of the store.</summary>
    internal T Read<T>(Func<MvccStore.MvccTxn, T> read)
    {
        Store.Lock.EnterReadLock();
        try
        {
            return read(Store.Begin(writable: false));
        }
        finally
        {
            Store.Lock.ExitReadLock();
        }
    }

    /// <summary>
    /// Like <see cref="Read{T}"/> for one long range read: the scan lets waiting writes in every
    /// few thousand keys instead of holding them off for its whole length.
    /// </summary>
    internal T ReadLongRange<T>(Func<MvccStore.MvccTxn, T> read)
    {
        Store.Lock.EnterReadLock();
        try
        {
            return read(Store.BeginYieldingRead(LongRangeChunkKeys));
        }
        finally
        {
            Store.Lock.ExitReadLock();
        }
    }

    private const int LongRangeChunkKeys = 1024;

    private static ulong RandomNonZero()
    {
        ulong id;
        do id = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)); while (id == 0);
        return id;
    }

    /// <summary>
    /// Stops the shard: expiry, tailing and watchers. Deliberately not IAsyncDisposable: the host
    /// hands the same shard to every request scope, which must never dispose it.
    /// </summary>
    public async Task CloseAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        try { await _expiring.ConfigureAwait(false); } catch (OperationCanceledException) { }
        try { await _heartbeating.ConfigureAwait(false); } catch (OperationCanceledException) { }
        try { await _snapshotting.ConfigureAwait(false); } catch (OperationCanceledException) { }
        try { await _tailing.ConfigureAwait(false); } catch (OperationCanceledException) { }
        await Watches.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }
}
