using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;

namespace KvJournal.Journal.Nats;

/// <summary>
/// The replicated journal: one JetStream stream per shard, replicated by nats-server (Raft inside
/// NATS; no consensus of ours). A publish acknowledged by the stream is the commit point: with
/// the servers' <c>sync_interval: always</c> every replica has fsynced it.
/// </summary>
/// <remarks>
/// Append: concurrent entries are packed into one message (group commit) while the previous
/// message is in flight; each message carries a Nats-Msg-Id made of the member id, this start's
/// nonce and a counter, so a publish retried after a lost ack is dropped by the server as a
/// duplicate (the applier's exactly-once window is the second line). A publish is retried until
/// <see cref="NatsJournalOptions.RequestTimeout"/>, so a leader election is only latency.
/// Tail: an ordered consumer from the reader's position; the first sequence and every one after
/// are checked (a consumer asked to start below the stream's first message silently starts at the
/// first), and each message's checksum (<see cref="MessageFrame"/>).
/// </remarks>
public sealed partial class NatsJournal : IJournal
{
    private readonly NatsConnection _connection;
    private readonly NatsJSContext _js;
    private readonly NatsJournalOptions _options;
    private readonly ILogger _logger;
    private readonly string _stream;
    private readonly string _subject;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });

    // An entry waiting for its message's ack; it fails once its deadline (append + request timeout) passes.
    private readonly record struct Pending(ReadOnlyMemory<byte> Entry, TaskCompletionSource<long> Done, DateTime Deadline);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _sender;
    private readonly string _msgIdPrefix;
    private long _batches;
    private long _lastDurable = -1;
    private volatile bool _reachable = true;

    private NatsJournal(NatsConnection connection, NatsJournalOptions options, string shard, ILogger logger)
    {
        _connection = connection;
        _js = new NatsJSContext(connection);
        _options = options;
        _logger = logger;
        _stream = StreamName(shard);
        _subject = "kvjournal." + shard;
        _msgIdPrefix = $"{options.MemberId:x16}-{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds():x}-";
        _snapshotBucket = _stream + "-snapshots";
        _sender = Task.Run(SendLoopAsync);
    }

    /// <summary>The stream that holds shard <paramref name="shard"/>'s journal.</summary>
    public static string StreamName(string shard) => "kvjournal-" + shard;

    /// <summary>
    /// Connects, then creates the shard's stream or checks that the existing one is at least as
    /// strong as asked; refuses (<see cref="JournalUnavailableException"/>) otherwise, or when no
    /// server answers within the request timeout.
    /// </summary>
    public static async Task<NatsJournal> OpenAsync(NatsJournalOptions options, string shard, ILogger logger, CancellationToken cancellationToken)
    {
        var connection = new NatsConnection(ConnectionOptions(options));
        try
        {
            await connection.ConnectAsync().AsTask().WaitAsync(options.RequestTimeout, cancellationToken).ConfigureAwait(false);
            var journal = new NatsJournal(connection, options, shard, logger);
            // A cluster that just started may not have elected its JetStream meta leader yet.
            var started = DateTime.UtcNow;
            var nextLog = started + TimeSpan.FromSeconds(5);
            while (true)
            {
                try
                {
                    await journal.EnsureStreamAsync(cancellationToken).ConfigureAwait(false);
                    return journal;
                }
                catch (Exception ex) when (IsRecovering(ex) && DateTime.UtcNow < started + options.StartTimeout)
                {
                    if (DateTime.UtcNow >= nextLog && logger.IsEnabled(LogLevel.Warning))
                    {
                        logger.LogWarning("journal: waiting for NATS JetStream to answer ({Reason}); giving up after {Timeout} s", ex.Message, options.StartTimeout.TotalSeconds);
                        nextLog = DateTime.UtcNow + TimeSpan.FromSeconds(5);
                    }
                    await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is TimeoutException or NatsException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw new JournalUnavailableException($"cannot reach the NATS servers at {string.Join(",", options.Servers)}: {ex.Message}", ex);
        }
    }

    private static NatsOpts ConnectionOptions(NatsJournalOptions o) => NatsOpts.Default with
    {
        Url = string.Join(",", o.Servers.Select(u => u.GetLeftPart(UriPartial.Authority))),
        Name = $"kvjournal-member-{o.MemberId:x16}",
        AuthOpts = o.User is null ? NatsAuthOpts.Default : NatsAuthOpts.Default with { Username = o.User, Password = o.Password },
        TlsOpts = o.CaFile is null && o.CertFile is null ? NatsTlsOpts.Default : NatsTlsOpts.Default with { CaFile = o.CaFile, CertFile = o.CertFile, KeyFile = o.KeyFile, Mode = TlsMode.Require },
        RequestTimeout = TimeSpan.FromSeconds(2),
        ConnectTimeout = TimeSpan.FromSeconds(2),
        MaxReconnectRetry = -1,
        ReconnectWaitMin = TimeSpan.FromMilliseconds(100),
        ReconnectWaitMax = TimeSpan.FromSeconds(1),
        RetryOnInitialConnect = false,
    };

    // The largest message: one entry alone with its framing; group commits stay below it.
    private int MaxMessageBytes => _options.MaxEntryBytes + 64 * 1024;

    private async Task EnsureStreamAsync(CancellationToken cancellationToken)
    {
        var wanted = new StreamConfig(_stream, [_subject])
        {
            Storage = StreamConfigStorage.File,
            NumReplicas = _options.Replicas,
            DuplicateWindow = NatsJournalOptions.DuplicateWindow,
            Discard = StreamConfigDiscard.New, // never drop an unread entry: refuse new ones at a limit instead
            MaxMsgSize = MaxMessageBytes,
            MaxMsgs = -1,
            MaxBytes = -1,
            MaxAge = TimeSpan.Zero,
            DenyDelete = true,
        };
        INatsJSStream stream;
        try
        {
            stream = await _js.GetStreamAsync(_stream, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (NatsJSApiException ex) when (ex.Error.Code == 404)
        {
            stream = await _js.CreateStreamAsync(wanted, cancellationToken).ConfigureAwait(false);
            if (_logger.IsEnabled(LogLevel.Information)) _logger.LogInformation("journal: created stream {Stream} with {Replicas} replicas", _stream, _options.Replicas);
            return;
        }
        var have = stream.Info.Config;
        var weaker = new List<string>();
        if (have.Storage != StreamConfigStorage.File) weaker.Add($"storage {have.Storage} (file wanted)");
        if (have.NumReplicas < _options.Replicas) weaker.Add($"{have.NumReplicas} replicas ({_options.Replicas} wanted)");
        if (have.DuplicateWindow < NatsJournalOptions.DuplicateWindow) weaker.Add($"a duplicate window of {have.DuplicateWindow} (at least {NatsJournalOptions.DuplicateWindow} wanted)");
        if (have.Discard != StreamConfigDiscard.New && (have.MaxMsgs > 0 || have.MaxBytes > 0 || have.MaxAge > TimeSpan.Zero)) weaker.Add("limits that discard old entries");
        if (have.MaxMsgSize > 0 && have.MaxMsgSize < MaxMessageBytes) weaker.Add($"a max message size of {have.MaxMsgSize} bytes ({MaxMessageBytes} wanted for the largest entry)");
        if (weaker.Count > 0)
            throw new JournalUnavailableException($"stream {_stream} is weaker than configured: {string.Join(", ", weaker)}; fix the stream or the flags");
    }

    public long LastDurablePosition => Interlocked.Read(ref _lastDurable);

    public bool IsReachable => _reachable && _connection.ConnectionState == NatsConnectionState.Open;

    public string Describe(long position) => position < 0 ? $"the start of NATS stream {_stream}" :
        $"NATS stream {_stream} message {MessageFrame.SequenceOf(position)} entry {((position & 0xFFFF) == 0xFFFF ? "last" : (position & 0xFFFF).ToString(System.Globalization.CultureInfo.InvariantCulture))}";

    public ValueTask<long> AppendAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default)
    {
        if (_stopping.IsCancellationRequested) throw new JournalUnavailableException("journal client is closed");
        var done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite(new Pending(entry, done, DateTime.UtcNow + _options.RequestTimeout))) throw new JournalUnavailableException("journal client is closed");
        return new ValueTask<long>(done.Task.WaitAsync(cancellationToken));
    }

    // Group commit: one message in flight; whatever queued meanwhile goes into the next one.
    private async Task SendLoopAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<Pending>();
        var entries = new List<ReadOnlyMemory<byte>>();
        try
        {
            while (await reader.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                batch.Clear();
                entries.Clear();
                int size = MessageFrame.HeaderBytes;
                while (batch.Count < MessageFrame.MaxEntries && reader.TryPeek(out var next) && (batch.Count == 0 || size + 4 + next.Entry.Length <= GroupBytes))
                {
                    reader.TryRead(out next);
                    batch.Add(next);
                    entries.Add(next.Entry);
                    size += 4 + next.Entry.Length;
                }
                await PublishAsync(batch, entries).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
        while (reader.TryRead(out var left)) left.Done.TrySetException(new JournalUnavailableException("journal client is closed"));
    }

    // Messages of a group commit stay small enough to replicate quickly; one large entry goes alone.
    private const int GroupBytes = 1 << 20;

    private async Task PublishAsync(List<Pending> batch, List<ReadOnlyMemory<byte>> entries)
    {
        byte[] message = MessageFrame.Encode(entries);
        var opts = NewMessageId();
        var deadline = batch[0].Deadline; // the oldest entry's
        var idSince = DateTime.UtcNow;
        Exception? last = null;
        while (!_stopping.IsCancellationRequested && DateTime.UtcNow < deadline)
        {
            try
            {
                // Bounded: while disconnected the client would hold a publish until it reconnects.
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                attempt.CancelAfter(Min(deadline - DateTime.UtcNow, AttemptTimeout));
                var ack = await _js.PublishAsync(_subject, message, NatsRawSerializer<byte[]>.Default, opts, cancellationToken: attempt.Token).ConfigureAwait(false);
                ack.EnsureSuccess();
                Reachable(true);
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(MessageFrame.Position(ack.Seq, i, batch.Count));
                AdvanceDurable(MessageFrame.EndOf(ack.Seq));
                return;
            }
            catch (NatsJSApiException ex) when (ex.Error.Code is 400 or 413)
            {
                // Refused for good (too large, a limit): retrying cannot help.
                Fail(batch, new JournalUnavailableException($"the journal refused the entry: {ex.Error.Description}", ex));
                return;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !_stopping.IsCancellationRequested)
            {
                last = ex;
                // After a leader change a stream leader can hold a message id it staged and then
                // dropped as "in process" for minutes: a retry under it is refused (10158) or never
                // answered, while a message under a new id is stored at once. So each id gets a
                // bounded time; then the message goes again under a new one. A first copy that
                // lands after all is harmless: the applier skips entries it applied (member and request id).
                if (DateTime.UtcNow - idSince > MessageIdPatience)
                {
                    if (_logger.IsEnabled(LogLevel.Information)) _logger.LogInformation("journal: NATS stream {Stream} has not acknowledged message id {MsgId} within {Seconds:0.0} s ({Reason}); publishing it again under a new id", _stream, opts.MsgId, MessageIdPatience.TotalSeconds, ex.Message);
                    opts = NewMessageId();
                    idSince = DateTime.UtcNow;
                }
                // A stream that answers "in process" is there; it only holds this id.
                if (ex is not NatsJSApiException { Error.ErrCode: DuplicateInProcess }) Reachable(false, ex);
                // Until then the same message id again: if the first publish was stored, the server answers with its sequence.
                if (DateTime.UtcNow < deadline) await Task.Delay(RetryInterval, _stopping.Token).ConfigureAwait(false);
            }
        }
        Fail(batch, new JournalUnavailableException($"the journal did not acknowledge within {_options.RequestTimeout.TotalSeconds:0} s: {last?.Message}", last));
    }

    private static readonly TimeSpan RetryInterval = TimeSpan.FromMilliseconds(100);

    // JetStream's JSStreamDuplicateMessageConflict: a message with this id is still being stored.
    private const int DuplicateInProcess = 10158;

    // A message really in process is stored within a Raft round trip; one unacknowledged this long
    // under one id goes again under a new one (a NATS election after kill -9 takes 4-9 s).
    private static readonly TimeSpan MessageIdPatience = TimeSpan.FromSeconds(2);

    private NatsJSPubOpts NewMessageId() => new() { MsgId = _msgIdPrefix + Interlocked.Increment(ref _batches).ToString(System.Globalization.CultureInfo.InvariantCulture) };

    // What JetStream answers while it has no meta or stream leader yet (a cluster just started or restarted).
    // "No suitable peers for placement" (JSClusterNoPeersErrF) comes while the cluster's peers are still being seen as current.
    // A publish to a stream just made (an object store's bucket) goes unanswered until the stream has a leader.
    private static bool IsRecovering(Exception ex) => ex is NatsJSApiException { Error.Code: 503 } or NatsJSApiException { Error.ErrCode: NoPeersForPlacement }
        or NatsNoRespondersException or NatsJSApiNoResponseException or NatsJSPublishNoResponseException;

    private const int NoPeersForPlacement = 10005;

    /// <summary>A JetStream request retried while JetStream recovers, up to the request timeout; then the journal is unavailable.</summary>
    private async Task<T> WhileRecoveringAsync<T>(Func<Task<T>> request, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _options.RequestTimeout;
        while (true)
        {
            try
            {
                return await request().ConfigureAwait(false);
            }
            catch (Exception ex) when (IsRecovering(ex))
            {
                if (DateTime.UtcNow >= deadline) throw new JournalUnavailableException($"NATS JetStream did not answer within {_options.RequestTimeout.TotalSeconds:0} s: {ex.Message}", ex);
                await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
            }
        }
    }
    // One publish or stream-info attempt; a leader election makes several fail before one lands.
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromMilliseconds(500);

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? (a < TimeSpan.Zero ? TimeSpan.Zero : a) : b;

    private static void Fail(List<Pending> batch, Exception error)
    {
        foreach (var item in batch) item.Done.TrySetException(error);
    }

    private void AdvanceDurable(long position)
    {
        long seen;
        do seen = Interlocked.Read(ref _lastDurable);
        while (position > seen && Interlocked.CompareExchange(ref _lastDurable, position, seen) != seen);
    }

    // Logged once per change, so an operator sees when the journal went away and came back.
    private void Reachable(bool reachable, Exception? why = null)
    {
        if (_reachable == reachable) return;
        _reachable = reachable;
        if (reachable) { if (_logger.IsEnabled(LogLevel.Information)) _logger.LogInformation("journal: NATS stream {Stream} answers again", _stream); }
        else if (_logger.IsEnabled(LogLevel.Warning)) _logger.LogWarning("journal: NATS stream {Stream} does not answer ({Reason}); writes and linearizable reads wait up to {Timeout} s", _stream, why?.Message, _options.RequestTimeout.TotalSeconds);
    }

    /// <summary>
    /// The stream's last sequence, asked of its leader, and only from a leader that heard from a
    /// majority of its replicas lately: a leader cut off from the others still answers stream info
    /// until it steps down, and its last sequence may be behind a new leader's (retried up to the
    /// request timeout).
    /// </summary>
    public async ValueTask<long> ReadIndexAsync(CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _options.RequestTimeout;
        while (true)
        {
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(Min(deadline - DateTime.UtcNow, AttemptTimeout));
                var stream = await _js.GetStreamAsync(_stream, cancellationToken: attempt.Token).ConfigureAwait(false);
                if (!HasQuorum(stream.Info.Cluster)) throw new JournalUnavailableException($"the leader of stream {_stream} has not heard from a majority of its replicas");
                ulong last = stream.Info.State.LastSeq;
                Reachable(true);
                long index = last == 0 ? -1 : MessageFrame.EndOf(last);
                AdvanceDurable(index);
                return index;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                Reachable(false, ex);
                if (DateTime.UtcNow >= deadline) throw new JournalUnavailableException($"the journal did not answer within {_options.RequestTimeout.TotalSeconds:0} s: {ex.Message}", ex);
                await Task.Delay(RetryInterval, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    // The leader counts itself; a replica counts when it is current and was heard from within QuorumWindow.
    private static bool HasQuorum(ClusterInfo? cluster)
    {
        if (cluster is null) return true; // a single server, not clustered
        if (string.IsNullOrEmpty(cluster.Leader)) return false;
        int replicas = 1 + (cluster.Replicas?.Count ?? 0), live = 1;
        foreach (var peer in cluster.Replicas ?? [])
        {
            if (peer.Current && !peer.Offline && peer.Active < QuorumWindow) live++;
        }
        return live > replicas / 2;
    }

    // An idle leader heartbeats its replicas every second; three seconds of silence means they are gone.
    private static readonly TimeSpan QuorumWindow = TimeSpan.FromSeconds(3);

    public async IAsyncEnumerable<JournalRecord> ReadAsync(long afterPosition, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ulong start = afterPosition < 0 ? 1 : MessageFrame.SequenceOf(afterPosition);
        var info = (await _js.GetStreamAsync(_stream, cancellationToken: cancellationToken).ConfigureAwait(false)).Info.State;
        // Below the first retained message the reader lacks what trimming dropped: start from a snapshot.
        if (info.LastSeq > 0 && start < info.FirstSeq)
            throw new JournalTrimmedException($"journal entries after position {afterPosition} were trimmed; the stream's first message is {info.FirstSeq}");
        var consumer = await _js.CreateOrderedConsumerAsync(_stream, new NatsJSOrderedConsumerOpts
        {
            DeliverPolicy = ConsumerConfigDeliverPolicy.ByStartSequence,
            OptStartSeq = start,
        }, cancellationToken).ConfigureAwait(false);
        ulong expected = start;
        await foreach (var msg in consumer.ConsumeAsync(NatsRawSerializer<byte[]>.Default, ConsumeOptions, cancellationToken).ConfigureAwait(false))
        {
            ulong sequence = msg.Metadata?.Sequence.Stream ?? 0;
            if (sequence != expected)
                throw new JournalDamagedException(sequence > expected
                    ? $"NATS stream {_stream} skipped messages {expected} to {sequence - 1} (trimmed or lost below the reader)"
                    : $"NATS stream {_stream} delivered message {sequence} again after {expected - 1}");
            expected = sequence + 1;
            var entries = MessageFrame.Decode(msg.Data, out string? problem)
                ?? throw new JournalDamagedException($"journal message at {Describe(MessageFrame.EndOf(sequence))} is damaged: {problem}");
            for (int i = 0; i < entries.Count; i++)
            {
                long position = MessageFrame.Position(sequence, i, entries.Count);
                if (position <= afterPosition) continue;
                yield return new JournalRecord(position, entries[i]);
            }
            AdvanceDurable(MessageFrame.EndOf(sequence));
        }
    }

    // The ordered consumer is an ephemeral consumer on one server: when that server dies, the
    // client notices by missed heartbeats and recreates it from the last sequence it delivered.
    // NATS.Net's default heartbeat (30 s) would leave a member's tail stalled that long.
    private static readonly NatsJSConsumeOpts ConsumeOptions = new()
    {
        MaxMsgs = 1000, // NATS.Net's default batch, which setting the timings requires naming
        Expires = TimeSpan.FromSeconds(2),
        IdleHeartbeat = TimeSpan.FromMilliseconds(500),
    };

    public async Task TrimBelowAsync(long position, CancellationToken cancellationToken)
    {
        ulong keepFrom = MessageFrame.SequenceOf(position);
        if (keepFrom <= 1) return;
        await _js.PurgeStreamAsync(_stream, new StreamPurgeRequest { Seq = keepFrom }, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stopping.CancelAsync().ConfigureAwait(false);
        try { await _sender.ConfigureAwait(false); } catch (OperationCanceledException) { }
        await _connection.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }
}
