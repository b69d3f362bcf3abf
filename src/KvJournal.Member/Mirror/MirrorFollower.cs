using System.Threading.Channels;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Journal;
using KvJournal.Member.Face;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using Microsoft.Extensions.Logging;
using Mvccpb;

namespace KvJournal.Member.Mirror;

/// <summary>What a cut-over request came to: done (writes open), or refused and why.</summary>
public readonly record struct CutOverResult(bool Done, long Revision, long Keys, string Message);

/// <summary>
/// Keeps a mirror an exact copy of its source etcd, revision for revision: it watches every key
/// from the revision after the mirror's own (with prev_kv, which the applier checks against the
/// mirror's keys), and proposes what arrived as journal entries applied at the source's numbers.
/// A lost connection or a watch the source cancels resumes from the mirror's revision; a source
/// compacted past it cannot be followed, which is logged and reported on cut-over. The cut-over stops at the operator's revision, checks that both stores hold the same
/// keys there, takes over the source's leases and opens writes.
/// </summary>
public sealed class MirrorFollower(ShardServer face, EtcdSource source, ILogger logger, TimeProvider time)
{
    private const int ComparePage = 1000;
    // About this much of the source's events go into one journal entry (a revision is never split).
    private const long EntryBytes = 512 * 1024;
    private static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(1);
    private static readonly ByteString AllKeys = ByteString.CopyFrom(0);

    // Held while a batch is applied and while a cut-over sets or clears its stop.
    private readonly SemaphoreSlim _gate = new(1, 1);
    private long? _stopAt;
    private TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _resume = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The keyspace that mirrors the source.</summary>
    public ShardServer Face => face;

    /// <summary>Why following stopped for good (the source compacted past the mirror), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>How long a cut-over waits for the mirror to reach its revision.</summary>
    public TimeSpan CutOverWait { get; init; } = TimeSpan.FromSeconds(60);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("mirror: following {Source} from revision {Revision}", source.Endpoint, face.Revision + 1);
        try
        {
            while (!cancellationToken.IsCancellationRequested && face.MirrorSource is not null)
            {
                if (StoppedAtTarget(out var resume))
                {
                    await resume.WaitAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }
                try
                {
                    await FollowAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is RpcException or IOException or HttpRequestException or JournalUnavailableException && !cancellationToken.IsCancellationRequested)
                {
                    if (ex is RpcException rpc && EtcdSource.IsExpiredToken(rpc)) source.ForgetToken();
                    if (logger.IsEnabled(LogLevel.Warning))
                        logger.LogWarning("mirror: lost {Source} or the journal ({Error}); resuming from revision {Revision} in {Delay}", source.Endpoint, ex.Message, face.Revision + 1, RetryAfter);
                    await Task.Delay(RetryAfter, time, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
        catch (MirrorBrokenException ex)
        {
            Failure = ex.Message;
            _reached.TrySetResult(); // a cut-over waiting for a revision hears why it will not come
            logger.LogError("mirror: cannot follow {Source} any more: {Problem}", source.Endpoint, ex.Message);
        }
    }

    private bool StoppedAtTarget(out Task resume)
    {
        resume = _resume.Task;
        return _stopAt is long stop && face.Revision >= stop;
    }

    // One watch of every key, until it ends, fails, or the mirror reached the cut-over's revision.
    // A reader takes the watch's responses as they come; the applier proposes all that arrived
    // while its last entry was committing as the next entry (split between revisions into entries
    // of about EntryBytes), so the mirror keeps up with a source writing faster than one journal
    // commit per revision.
    private async Task FollowAsync(CancellationToken cancellationToken)
    {
        long from = face.Revision + 1;
        var headers = await source.HeadersAsync(cancellationToken).ConfigureAwait(false);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var watch = source.Watch.Watch(headers, cancellationToken: stop.Token);
        await watch.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest { Key = AllKeys, RangeEnd = AllKeys, StartRevision = from, PrevKv = true, ProgressNotify = true },
        }, cancellationToken).ConfigureAwait(false);
        var arrived = Channel.CreateBounded<IReadOnlyList<Event>>(new BoundedChannelOptions(4096) { SingleReader = true, SingleWriter = true });
        var reading = ReadAsync(watch, arrived.Writer, stop.Token);
        try
        {
            while (await arrived.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                if (await ApplyAsync(arrived.Reader, cancellationToken).ConfigureAwait(false)) return;
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try { await reading.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            catch (RpcException) when (stop.IsCancellationRequested) { }
        }
        await reading.ConfigureAwait(false); // the watch ended: its error, if any, is the follower's
    }

    private async Task ReadAsync(AsyncDuplexStreamingCall<WatchRequest, WatchResponse> watch, ChannelWriter<IReadOnlyList<Event>> arrived, CancellationToken cancellationToken)
    {
        try
        {
            while (await watch.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                var response = watch.ResponseStream.Current;
                if (response.CompactRevision > 0)
                    throw new MirrorBrokenException($"the source compacted revision {response.CompactRevision} before the mirror read revision {face.Revision + 1}: start a new mirror on an empty data dir");
                if (response.Canceled)
                {
                    logger.LogWarning("mirror: {Source} canceled the watch ({Reason}); resuming", source.Endpoint, response.CancelReason);
                    return;
                }
                if (response.Events.Count > 0) await arrived.WriteAsync(response.Events, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            arrived.TryComplete();
        }
    }

    // Proposes the revisions that arrived, up to the cut-over's stop if one is set; true once it is reached.
    private async Task<bool> ApplyAsync(ChannelReader<IReadOnlyList<Event>> arrived, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long current = face.Revision;
            var batch = new MirrorRevisions();
            MirrorRevision? revision = null;
            long bytes = 0;
            var granted = new HashSet<long>();
            bool stopped = false;
            while (!stopped && arrived.TryRead(out var events))
            {
                foreach (var e in events)
                {
                    long rev = e.Kv.ModRevision;
                    if (rev <= current) continue; // already here (a resumed watch)
                    if (_stopAt is long stop && rev > stop)
                    {
                        stopped = true;
                        break;
                    }
                    if (revision is null || revision.Revision != rev)
                    {
                        if (bytes >= EntryBytes)
                        {
                            await ProposeAsync(batch, cancellationToken).ConfigureAwait(false);
                            batch = new MirrorRevisions();
                            bytes = 0;
                        }
                        batch.Revisions.Add(revision = new MirrorRevision { Revision = rev });
                    }
                    // The applier needs only the previous version's revision to check it holds the same.
                    var copy = new Event { Type = e.Type, Kv = e.Kv, PrevKv = e.PrevKv is { } prev ? new KeyValue { ModRevision = prev.ModRevision } : null };
                    bytes += copy.CalculateSize();
                    revision.Events.Add(copy);
                    long lease = e.Type == Event.Types.EventType.Put ? e.Kv.Lease : 0;
                    if (lease != 0 && granted.Add(lease) && !face.HoldsLease(lease)) revision.Leases.Add(await LeaseOfSourceAsync(lease, cancellationToken).ConfigureAwait(false));
                }
                if (bytes >= EntryBytes) break;
            }
            if (batch.Revisions.Count > 0) await ProposeAsync(batch, cancellationToken).ConfigureAwait(false);
            if (_stopAt is long target && face.Revision >= target)
            {
                _reached.TrySetResult();
                return true;
            }
            return false;
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task ProposeAsync(MirrorRevisions batch, CancellationToken cancellationToken)
    {
        try
        {
            await face.ApplyMirroredAsync(batch, cancellationToken).ConfigureAwait(false);
        }
        catch (EtcdException ex) when (ex.Error is EtcdError.ApplyFailed or EtcdError.NotMirroring or EtcdError.RequestTooLarge)
        {
            throw new MirrorBrokenException($"revisions {batch.Revisions[0].Revision} to {batch.Revisions[^1].Revision} could not be applied ({ex.Message}): the mirror no longer matches its source (see the apply log)");
        }
    }

    // A lease the source attached a key to, as the source holds it now (its granted TTL).
    private async Task<LeaseGrant> LeaseOfSourceAsync(long id, CancellationToken cancellationToken)
    {
        var ttl = await source.CallAsync(h => source.Lease.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = id }, h, cancellationToken: cancellationToken).ResponseAsync, cancellationToken).ConfigureAwait(false);
        return new LeaseGrant { Id = id, TtlSeconds = Math.Max(ttl.GrantedTTL, 1), AtUnixMs = face.NowUnixMs };
    }

    /// <summary>
    /// Stops following at <paramref name="revision"/>, checks that the source and the mirror hold
    /// the same keys there, takes over the source's leases and opens writes (a journal entry, so
    /// every member on the journal opens together). Refused, with the reason, when the mirror is
    /// already past that revision, does not reach it in time, or the keys differ; following then
    /// goes on.
    /// </summary>
    public async Task<CutOverResult> CutOverAsync(long revision, CancellationToken cancellationToken)
    {
        if (Failure is { } failure) return Refused(revision, failure);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long at = face.Revision;
            if (at > revision) return Refused(revision, $"the mirror already applied revision {at}: cut over at revision {at} or later");
            _stopAt = revision;
            _reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (at == revision) _reached.TrySetResult();
        }
        finally
        {
            _gate.Release();
        }

        bool done = false;
        try
        {
            try
            {
                await _reached.Task.WaitAsync(CutOverWait, time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return Refused(revision, $"the mirror did not reach revision {revision} within {CutOverWait.TotalSeconds:0} s (it is at {face.Revision}); has the source written it yet?");
            }
            if (Failure is { } broken) return Refused(revision, broken);
            var (keys, difference) = await CompareAsync(revision, cancellationToken).ConfigureAwait(false);
            if (difference is not null) return Refused(revision, difference);
            var cutOver = new MirrorCutOver { Revision = revision, AtUnixMs = face.NowUnixMs };
            cutOver.Leases.AddRange(await SourceLeasesAsync(cancellationToken).ConfigureAwait(false));
            await face.CutOverAsync(cutOver, cancellationToken).ConfigureAwait(false);
            done = true;
            string message = $"cut over from {source.Endpoint} at revision {revision}: {keys} keys match the source, {cutOver.Leases.Count} leases taken over; writes are open";
            if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("mirror: {Message}", message);
            return new CutOverResult(true, revision, keys, message);
        }
        finally
        {
            if (!done) _stopAt = null;
            var resume = _resume;
            _resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            resume.TrySetResult();
        }
    }

    private CutOverResult Refused(long revision, string why)
    {
        logger.LogWarning("mirror: cut-over at revision {Revision} refused: {Reason}", revision, why);
        return new CutOverResult(false, revision, 0, $"cut-over at revision {revision} refused: {why}");
    }

    // Both stores' keys at the revision, page by page in key order: the count, or the first difference.
    private async Task<(long Keys, string? Difference)> CompareAsync(long revision, CancellationToken cancellationToken)
    {
        long keys = 0;
        var from = AllKeys;
        while (true)
        {
            RangeResponse theirs;
            try
            {
                theirs = await source.CallAsync(h => source.Kv.RangeAsync(new RangeRequest { Key = from, RangeEnd = AllKeys, Revision = revision, Limit = ComparePage }, h, cancellationToken: cancellationToken).ResponseAsync, cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.OutOfRange)
            {
                return (keys, $"the source cannot read revision {revision} to compare ({ex.Status.Detail})");
            }
            var ours = face.KeysAt(revision, from, ComparePage);
            for (int i = 0; i < Math.Max(theirs.Kvs.Count, ours.Count); i++)
            {
                var a = i < theirs.Kvs.Count ? theirs.Kvs[i] : null;
                var b = i < ours.Count ? ours[i] : null;
                if (a is null || b is null || !a.Equals(b))
                    return (keys, $"at revision {revision} the stores differ: the source has {Describe(a)}, the mirror {Describe(b)}");
                keys++;
            }
            if (!theirs.More) return (keys, null);
            from = ByteString.CopyFrom([.. theirs.Kvs[^1].Key.Span, 0]);
        }
    }

    private static string Describe(KeyValue? kv) => kv is null ? "no further key"
        : $"{kv.Key.ToStringUtf8()} (mod {kv.ModRevision}, create {kv.CreateRevision}, version {kv.Version}, lease {kv.Lease}, {kv.Value.Length} value bytes)";

    private async Task<List<MirrorLease>> SourceLeasesAsync(CancellationToken cancellationToken)
    {
        var list = await source.CallAsync(h => source.Lease.LeaseLeasesAsync(new LeaseLeasesRequest(), h, cancellationToken: cancellationToken).ResponseAsync, cancellationToken).ConfigureAwait(false);
        var leases = new List<MirrorLease>(list.Leases.Count);
        foreach (var l in list.Leases)
        {
            var ttl = await source.CallAsync(h => source.Lease.LeaseTimeToLiveAsync(new LeaseTimeToLiveRequest { ID = l.ID }, h, cancellationToken: cancellationToken).ResponseAsync, cancellationToken).ConfigureAwait(false);
            if (ttl.TTL >= 0) leases.Add(new MirrorLease { Id = l.ID, GrantedTtl = ttl.GrantedTTL, RemainingTtl = ttl.TTL });
        }
        return leases;
    }

    private sealed class MirrorBrokenException(string message) : Exception(message);
}
