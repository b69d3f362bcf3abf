using System.Globalization;
using System.Text;

namespace KvJournal.Server.Probe;

/// <summary>The probe's Prometheus metrics: probe counts and last latencies per target, and the availability of closed minutes.</summary>
public sealed class ProbeGauges(MinuteLedger ledger, TimeProvider time)
{
    private sealed class Target
    {
        public long Ok;
        public long Failed;
        public ProbeResult Last;
    }

    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, Target> _targets = new(StringComparer.Ordinal);

    public void Record(ProbeResult result)
    {
        lock (_lock)
        {
            if (!_targets.TryGetValue(result.Target, out var t)) _targets.Add(result.Target, t = new Target());
            if (result.Ok) t.Ok++;
            else t.Failed++;
            t.Last = result;
        }
    }

    public string Text()
    {
        var text = new StringBuilder();
        var now = time.GetUtcNow();
        lock (_lock)
        {
            text.Append("# HELP kvjournal_probe_total Probes made, by result.\n# TYPE kvjournal_probe_total counter\n");
            foreach (var (name, t) in _targets)
                text.Append(CultureInfo.InvariantCulture, $"kvjournal_probe_total{{target=\"{name}\",result=\"ok\"}} {t.Ok}\nkvjournal_probe_total{{target=\"{name}\",result=\"failed\"}} {t.Failed}\n");
            text.Append("# HELP kvjournal_probe_latency_seconds The last probe's time per step.\n# TYPE kvjournal_probe_latency_seconds gauge\n");
            foreach (var (name, t) in _targets)
                text.Append(CultureInfo.InvariantCulture, $"kvjournal_probe_latency_seconds{{target=\"{name}\",step=\"put\"}} {t.Last.PutMs / 1000}\nkvjournal_probe_latency_seconds{{target=\"{name}\",step=\"get\"}} {t.Last.GetMs / 1000}\nkvjournal_probe_latency_seconds{{target=\"{name}\",step=\"watch\"}} {t.Last.WatchMs / 1000}\n");
            text.Append("# HELP kvjournal_probe_minute_available Whether the last closed minute was available (1) or not (0).\n# TYPE kvjournal_probe_minute_available gauge\n");
            foreach (var name in _targets.Keys)
                if (ledger.LastClosed(name) is { } m) text.Append(CultureInfo.InvariantCulture, $"kvjournal_probe_minute_available{{target=\"{name}\"}} {(m.Available ? 1 : 0)}\n");
            text.Append("# HELP kvjournal_probe_availability_ratio Available share of the closed minutes of the current UTC day and month.\n# TYPE kvjournal_probe_availability_ratio gauge\n");
            foreach (var name in _targets.Keys)
            {
                var (day, month) = ledger.Availability(name, now);
                text.Append(CultureInfo.InvariantCulture, $"kvjournal_probe_availability_ratio{{target=\"{name}\",window=\"day\"}} {day}\nkvjournal_probe_availability_ratio{{target=\"{name}\",window=\"month\"}} {month}\n");
            }
        }
        return text.ToString();
    }
}
