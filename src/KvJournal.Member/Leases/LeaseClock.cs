namespace KvJournal.Member.Leases;

/// <summary>
/// The wall clock lease entries carry. Deadlines are wall-clock times so they survive a restart
/// and mean the same on every member; their precision is bounded by the clock skew between the
/// members that renew and expire a lease (NTP keeps that to milliseconds).
/// </summary>
public static class LeaseClock
{
    public static long NowUnixMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}
