using Etcdserverpb;
using KvJournal.Member.Logging;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using Microsoft.Extensions.Logging;

namespace KvJournal.Member.Compaction;

/// <summary>
/// etcd's auto-compaction, proposed through the journal like any compaction, by the member
/// reported as leader only (should two briefly both lead, the second compaction of a revision is
/// refused as already compacted, harmlessly). A failed proposal is logged and retried next tick.
/// </summary>
/// <remarks>
/// Periodic: every retention/10 the current revision is sampled; the history kept reaches back to
/// the newest sample at least one retention old (etcd's periodic compactor). Revision: every five
/// minutes, compact to the current revision minus the retention (etcd's revision compactor).
/// </remarks>
public sealed class AutoCompactor
{
    private static readonly TimeSpan RevisionModeInterval = TimeSpan.FromMinutes(5);
    private readonly Shard _shard;
    private readonly TimeSpan _retention;
    private readonly long _keepRevisions;

    private AutoCompactor(Shard shard, TimeSpan retention, long keepRevisions)
    {
        _shard = shard;
        _retention = retention;
        _keepRevisions = keepRevisions;
        _logger = shard.Logs.CreateLogger("KvJournal.Compaction");
        _failures = new DutyFailures(_logger, "auto-compaction", _shard.Time);
    }

    private readonly ILogger _logger;
    private readonly DutyFailures _failures;

    public static AutoCompactor Periodic(Shard shard, TimeSpan retention) => new(shard, retention, 0);

    public static AutoCompactor Revision(Shard shard, long keepRevisions) => new(shard, TimeSpan.Zero, keepRevisions);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (_keepRevisions > 0) await RunRevisionModeAsync(cancellationToken).ConfigureAwait(false);
            else await RunPeriodicAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }

    private async Task RunPeriodicAsync(CancellationToken cancellationToken)
    {
        var samples = new Queue<(DateTimeOffset At, long Revision)>();
        using var timer = new PeriodicTimer(_retention / 10, _shard.Time);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            var now = _shard.Time.GetUtcNow();
            samples.Enqueue((now, CurrentRevision()));
            long target = 0;
            while (samples.Count > 0 && now - samples.Peek().At >= _retention) target = samples.Dequeue().Revision;
            if (target > 0) await CompactAsync(target, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task RunRevisionModeAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(RevisionModeInterval, _shard.Time);
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            long target = CurrentRevision() - _keepRevisions;
            if (target > 0) await CompactAsync(target, cancellationToken).ConfigureAwait(false);
        }
    }

    private long CurrentRevision() => _shard.Read(txn => txn.ReadRevision);

    // Nothing to do when that revision is already compacted; a failed proposal is retried next tick.
    private async Task CompactAsync(long revision, CancellationToken cancellationToken)
    {
        if (_shard.LeaderId != _shard.MemberId || _shard.Mirroring || _shard.Read(txn => txn.CompactRevision) >= revision) return;
        try
        {
            var result = await _shard.ProposeAsync(new JournalEntry { Compaction = new CompactionRequest { Revision = revision } }, cancellationToken).ConfigureAwait(false);
            _failures.Outcome(result.Error);
            if (_logger.IsEnabled(LogLevel.Information)) _logger.LogInformation("auto-compaction at revision {Revision}: {Outcome}", revision, result.Error == Storage.Apply.EtcdError.None ? "done" : result.Error.ToString());
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _failures.Failed(ex);
        }
    }
}
