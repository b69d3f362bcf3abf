using KvJournal.Storage.Apply;

namespace KvJournal.Member.Face;

/// <summary>
/// A shard's optional limits on client writes: a rate (a token bucket holding one second's worth)
/// and a number in flight. A write over either is refused at once with etcd's "too many requests",
/// before it reaches the journal, so a flood on one shard cannot take the CPU and journal time
/// another shard's writes need. Refusals are counted for /metrics.
/// </summary>
public sealed class WriteThrottle(double writesPerSecond, int maxInFlight, TimeProvider time)
{
    private readonly Lock _bucket = new();
    private readonly double _burst = Math.Max(1, writesPerSecond);
    private double _tokens = Math.Max(1, writesPerSecond);
    private long _filledAt = time.GetTimestamp();
    private int _inFlight;
    private long _refusedByRate;
    private long _refusedInFlight;

    public double WritesPerSecond => writesPerSecond;
    public int MaxInFlight => maxInFlight;
    public long RefusedByRate => Interlocked.Read(ref _refusedByRate);
    public long RefusedInFlight => Interlocked.Read(ref _refusedInFlight);

    /// <summary>Admits one write (call <see cref="Exit"/> when it is done) or throws etcd's "too many requests".</summary>
    public void Enter()
    {
        if (maxInFlight > 0 && Interlocked.Increment(ref _inFlight) > maxInFlight)
        {
            Interlocked.Decrement(ref _inFlight);
            Interlocked.Increment(ref _refusedInFlight);
            throw new EtcdException(EtcdError.TooManyRequests);
        }
        if (writesPerSecond > 0 && !TakeToken())
        {
            if (maxInFlight > 0) Interlocked.Decrement(ref _inFlight);
            Interlocked.Increment(ref _refusedByRate);
            throw new EtcdException(EtcdError.TooManyRequests);
        }
    }

    public void Exit()
    {
        if (maxInFlight > 0) Interlocked.Decrement(ref _inFlight);
    }

    private bool TakeToken()
    {
        lock (_bucket)
        {
            long now = time.GetTimestamp();
            _tokens = Math.Min(_burst, _tokens + time.GetElapsedTime(_filledAt, now).TotalSeconds * writesPerSecond);
            _filledAt = now;
            if (_tokens < 1) return false;
            _tokens -= 1;
            return true;
        }
    }
}
