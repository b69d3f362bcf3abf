using System.Collections.Concurrent;
using KvJournal.Storage.Apply;

namespace KvJournal.Member.Propose;

/// <summary>
/// Clients waiting for their entry to come back from the journal and be applied, by request id.
/// A proposal is registered before it is appended, since the applier may see the entry before the
/// append call returns.
/// </summary>
internal sealed class PendingProposals
{
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<ApplyResult>> _waiting = new();
    // Ids must not repeat across restarts within the applier's repeat window (AppliedRequests):
    // they count up from this start's wall clock in milliseconds, shifted to leave room for a
    // million requests per millisecond of downtime.
    private long _nextId = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() << 20;

    // Set once the applier stopped: no proposal is registered after it, none waits forever.
    private int _stopped; // an EtcdError

    /// <summary>
    /// Registers a proposal; null once the applier stopped (the caller proposes nothing then),
    /// so no client waits for an entry that will never be applied here.
    /// </summary>
    public (ulong Id, Task<ApplyResult> Applied)? Register()
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        var tcs = new TaskCompletionSource<ApplyResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[id] = tcs;
        // Checked after adding, so a Stop racing with this either sees the waiter or is seen here.
        if (Volatile.Read(ref _stopped) != 0)
        {
            _waiting.TryRemove(id, out _);
            return null;
        }
        return (id, tcs.Task);
    }

    public EtcdError StoppedWith => (EtcdError)Volatile.Read(ref _stopped);

    public void Complete(ulong id, ApplyResult result)
    {
        if (_waiting.TryRemove(id, out var tcs)) tcs.TrySetResult(result);
    }

    public void Abandon(ulong id) => _waiting.TryRemove(id, out _);

    /// <summary>Fails every waiting proposal with <paramref name="error"/> and refuses new ones.</summary>
    public void Stop(EtcdError error)
    {
        Volatile.Write(ref _stopped, (int)error);
        foreach (var id in _waiting.Keys) Complete(id, ApplyResult.Fail(error));
    }
}
