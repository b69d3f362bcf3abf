namespace KvJournal.Member.Reads;

/// <summary>
/// The position of the last entry this member applied, and the readers waiting for it to reach a
/// read index (etcd's ReadIndex wait, with the journal's durable tail as the index).
/// </summary>
internal sealed class AppliedPosition
{
    private readonly Lock _lock = new();
    private readonly PriorityQueue<TaskCompletionSource, long> _waiting = new();
    private long _position = -1;
    private Exception? _stopped;

    public long Value => Volatile.Read(ref _position);

    public Task WaitForAsync(long position, CancellationToken cancellationToken)
    {
        if (Value >= position) return Task.CompletedTask;
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_stopped is not null) return Task.FromException(_stopped);
            if (_position >= position) return Task.CompletedTask;
            _waiting.Enqueue(tcs, position);
        }
        return tcs.Task.WaitAsync(cancellationToken);
    }

    public void Advance(long position)
    {
        lock (_lock)
        {
            Volatile.Write(ref _position, position);
            while (_waiting.TryPeek(out var tcs, out long wanted) && wanted <= position)
            {
                _waiting.Dequeue();
                tcs.TrySetResult();
            }
        }
    }

    public void Stop(Exception reason)
    {
        lock (_lock)
        {
            _stopped = reason;
            while (_waiting.TryDequeue(out var tcs, out _)) tcs.TrySetException(reason);
        }
    }
}
