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

    public (ulong Id, Task<ApplyResult> Applied) Register()
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextId);
        var tcs = new TaskCompletionSource<ApplyResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[id] = tcs;
        return (id, tcs.Task);
    }

    public void Complete(ulong id, ApplyResult result)
    {
        if (_waiting.TryRemove(id, out var tcs)) tcs.TrySetResult(result);
    }

    public void Abandon(ulong id) => _waiting.TryRemove(id, out _);

    public void FailAll(EtcdError error)
    {
        foreach (var id in _waiting.Keys) Complete(id, ApplyResult.Fail(error));
    }
}
