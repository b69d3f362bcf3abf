using Microsoft.Extensions.Logging;

namespace KvJournal.Journal.Embedded;

/// <summary>
/// The embedded journal after a failed commit (a full disk, an I/O error). FasterLog does not
/// retry a failed flush, and nothing after it may be acknowledged, so the appends it covered fail
/// (their outcome is unknown to the caller, as with any failed append) and the log is reopened
/// from the device once a probe write there succeeds: recovery keeps exactly what was committed,
/// and writes resume on their own, without a restart.
/// </summary>
public sealed partial class FasterLogJournal
{
    private static readonly TimeSpan HealInterval = TimeSpan.FromSeconds(1);
    private const int ProbeBytes = 1 << 20;
    // Below this much free space a failed commit counts as a full disk, and a reopen is not tried
    // (FasterLog's error codes do not say ENOSPC).
    private const long RoomNeeded = 16L << 20;

    // Completed (and replaced) each time a healed log instance is published; readers waiting for one wait here.
    private TaskCompletionSource _instanceChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _durableSequence;

    /// <summary>Whether writes fail because the journal's device is full.</summary>
    public bool DiskFull { get; private set; }

    // Called by the commit loop with the commit's failure; returns once the journal writes again
    // or is closing.
    private async Task HealAsync(Exception failure)
    {
        DiskFull = IsDiskFull(failure) || FreeBytes() < RoomNeeded;
        Volatile.Write(ref _commitFailed, true);
        lock (_appendLock) Volatile.Write(ref _failure, failure);
        CompleteWaiters(long.MaxValue, new JournalUnavailableException("journal commit failed: " + failure.Message, failure));
        _logger.LogError(failure, "journal: a commit failed ({Reason}); writes fail until the device under {Directory} takes them again, checked every {Interval} s",
            DiskFull ? "the disk is full" : failure.Message, _directory, HealInterval.TotalSeconds);
        while (!_stopping.IsCancellationRequested)
        {
            await Task.Delay(HealInterval, _time, _stopping.Token).ConfigureAwait(false);
            if (FreeBytes() < RoomNeeded || !DeviceTakesWrites(out bool full))
            {
                DiskFull = true;
                continue;
            }
            await ReopenAsync().ConfigureAwait(false);
            DiskFull = false;
            if (_logger.IsEnabled(LogLevel.Information))
                _logger.LogInformation("journal: writes resume under {Directory}; the log was reopened at entry {Sequence} ({Position})",
                _directory, _lastSequence, Describe(_lastEnqueued));
            return;
        }
    }

    private long FreeBytes()
    {
        try
        {
            return new DriveInfo(_directory).AvailableFreeSpace;
        }
        catch (IOException)
        {
            return long.MaxValue; // unknown: let the probe write decide
        }
    }

    private static bool IsDiskFull(Exception failure)
    {
        for (var e = failure; e is not null; e = e.InnerException)
        {
            if (e.HResult == 28 || e.Message.Contains("space", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("error code 28", StringComparison.Ordinal)) return true;
        }
        return false;
    }

    // A write of ProbeBytes beside the log, flushed and removed: the device has room again.
    private bool DeviceTakesWrites(out bool full)
    {
        string probe = Path.Combine(_directory, "write-probe");
        full = false;
        try
        {
            using (var file = new FileStream(probe, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                file.Write(new byte[ProbeBytes]);
                file.Flush(flushToDisk: true);
            }
            return true;
        }
        catch (IOException ex)
        {
            full = IsDiskFull(ex);
            return false;
        }
        finally
        {
            try { File.Delete(probe); } catch (IOException) { }
        }
    }

    // Readers leave the failed instance, it is disposed, and the log is recovered from the device:
    // it must hold everything that was acknowledged (anything less is damage).
    private async Task ReopenAsync()
    {
        var failed = Volatile.Read(ref _instance);
        await failed.ReplaceAsync().ConfigureAwait(false);
        failed.Dispose();
        var reopened = LogInstance.Open(_directory, _maxEntryBytes);
        var (last, sequence) = FindLastEntry(reopened.Log, (Volatile.Read(ref _durableSequence), LastDurablePosition));
        lock (_appendLock)
        {
            Volatile.Write(ref _instance, reopened);
            PublishTail(last, sequence);
            Volatile.Write(ref _failure, null);
            Volatile.Write(ref _commitFailed, false);
        }
        Interlocked.Exchange(ref _instanceChanged, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    // The instance a reader scans next: the open one, or (while one is being replaced) the one after it.
    private async Task<LogInstance?> InstanceToReadAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            var changed = Volatile.Read(ref _instanceChanged).Task;
            var instance = Volatile.Read(ref _instance);
            // A failed instance has nothing more to give: wait for the reopened one.
            if (Volatile.Read(ref _failure) is null && instance.TryEnterReader()) return instance;
            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        return null;
    }
}
