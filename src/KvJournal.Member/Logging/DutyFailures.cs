using KvJournal.Storage.Apply;
using Microsoft.Extensions.Logging;

namespace KvJournal.Member.Logging;

/// <summary>
/// How a background duty (lease expiry, heartbeats, snapshots, auto-compaction) reports that it
/// failed and will try again: a new kind of failure is logged at once, the same one again at most
/// once a minute with how often it happened meanwhile, and the first success after failures once.
/// So an operator sees an outage begin and end without a line per retry.
/// </summary>
internal sealed class DutyFailures(ILogger logger, string duty, TimeProvider time)
{
    private static readonly TimeSpan RepeatEvery = TimeSpan.FromMinutes(1);
    private string? _last;
    private DateTimeOffset _loggedAt;
    private int _since;

    public void Failed(Exception ex) => Failed(ex.Message, ex);

    /// <summary>
    /// A proposal's outcome: the journal away, the member stopped or the entry not applied is a
    /// failure to retry; anything else (done, or refused as etcd refuses it) is not.
    /// </summary>
    public void Outcome(EtcdError error)
    {
        if (IsFailure(error)) Failed($"the proposal failed: {error}");
        else Succeeded();
    }

    /// <summary>Whether a proposal's outcome is a failure to retry (see <see cref="Outcome"/>).</summary>
    public static bool IsFailure(EtcdError error) => error is EtcdError.JournalUnavailable or EtcdError.Stopped or EtcdError.ApplyFailed;

    private void Failed(string reason, Exception? ex = null)
    {
        var now = time.GetUtcNow();
        if (reason == _last && now - _loggedAt < RepeatEvery)
        {
            _since++;
            return;
        }
        if (logger.IsEnabled(LogLevel.Warning))
        {
            if (reason == _last) logger.LogWarning("{Duty} still failing ({Count} more times): {Reason}", duty, _since + 1, reason);
            else logger.LogWarning(ex, "{Duty} failed; retrying: {Reason}", duty, reason);
        }
        _last = reason;
        _loggedAt = now;
        _since = 0;
    }

    public void Succeeded()
    {
        if (_last is null) return;
        if (logger.IsEnabled(LogLevel.Information)) logger.LogInformation("{Duty} works again", duty);
        _last = null;
    }
}
