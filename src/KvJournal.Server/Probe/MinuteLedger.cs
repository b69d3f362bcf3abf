namespace KvJournal.Server.Probe;

/// <summary>
/// Rolls probe results up into minutes per target (UTC minutes): a minute is available when at
/// least <c>share</c> of its probes succeeded. A minute closes when the first probe of a later
/// one arrives (or the probe stops); closed minutes go to the day's minutes file and to the
/// day and month totals the gauges show.
/// </summary>
public sealed class MinuteLedger(string dir, double share)
{
    private sealed class Open(DateTimeOffset minute)
    {
        public DateTimeOffset Minute { get; } = minute;
        public int Probes;
        public int Succeeded;
        public List<double> LatenciesMs { get; } = [];
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Open> _open = [];
    private readonly Dictionary<string, MinuteRecord> _lastClosed = [];
    // (target, period start) → (available minutes, measured minutes), for the day and the month.
    private readonly Dictionary<(string, DateTimeOffset), (long Available, long Measured)> _days = [], _months = [];

    /// <summary>Loads the closed minutes already on disk, so the day's and month's totals include earlier runs.</summary>
    public void LoadExisting()
    {
        if (!Directory.Exists(dir)) return;
        foreach (var m in ProbeFiles.ReadMinutes(dir)) Count(m);
    }

    public void Add(ProbeResult result)
    {
        var minute = Floor(result.At);
        lock (_lock)
        {
            if (_open.TryGetValue(result.Target, out var open) && open.Minute != minute)
            {
                Close(result.Target, open);
                open = null;
            }
            if (open is null) _open[result.Target] = open = new Open(minute);
            open.Probes++;
            if (result.Ok)
            {
                open.Succeeded++;
                open.LatenciesMs.Add(result.PutMs + result.GetMs + result.WatchMs);
            }
        }
    }

    /// <summary>Closes every open minute (the probe is stopping).</summary>
    public void CloseAll()
    {
        lock (_lock)
        {
            foreach (var (target, open) in _open) Close(target, open);
            _open.Clear();
        }
    }

    public MinuteRecord? LastClosed(string target)
    {
        lock (_lock) return _lastClosed.TryGetValue(target, out var m) ? m : null;
    }

    /// <summary>Availability over the closed minutes of the current UTC day and month (1 when none was measured).</summary>
    public (double Day, double Month) Availability(string target, DateTimeOffset now)
    {
        lock (_lock)
        {
            var (dayAvailable, dayMeasured) = _days.GetValueOrDefault((target, Day(now)));
            var (monthAvailable, monthMeasured) = _months.GetValueOrDefault((target, Month(now)));
            return (dayMeasured == 0 ? 1 : (double)dayAvailable / dayMeasured, monthMeasured == 0 ? 1 : (double)monthAvailable / monthMeasured);
        }
    }

    private void Close(string target, Open open)
    {
        var latencies = open.LatenciesMs;
        latencies.Sort();
        var record = new MinuteRecord(open.Minute, target, open.Probes, open.Succeeded, open.Succeeded >= share * open.Probes && open.Probes > 0,
            Percentile(latencies, 0.50), Percentile(latencies, 0.99));
        Directory.CreateDirectory(dir);
        File.AppendAllText(ProbeFiles.Minutes(dir, open.Minute), record.ToJson() + "\n");
        _lastClosed[target] = record;
        Count(record);
    }

    private void Count(MinuteRecord m)
    {
        foreach (var (totals, period) in new[] { (_days, Day(m.Minute)), (_months, Month(m.Minute)) })
        {
            var (available, measured) = totals.GetValueOrDefault((m.Target, period));
            totals[(m.Target, period)] = (available + (m.Available ? 1 : 0), measured + 1);
        }
    }

    public static DateTimeOffset Floor(DateTimeOffset t) => new(t.UtcDateTime.Year, t.UtcDateTime.Month, t.UtcDateTime.Day, t.UtcDateTime.Hour, t.UtcDateTime.Minute, 0, TimeSpan.Zero);

    private static DateTimeOffset Day(DateTimeOffset t) => new(t.UtcDateTime.Date, TimeSpan.Zero);

    private static DateTimeOffset Month(DateTimeOffset t) => new(t.UtcDateTime.Year, t.UtcDateTime.Month, 1, 0, 0, 0, TimeSpan.Zero);

    private static double Percentile(List<double> sorted, double q) =>
        sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
}
