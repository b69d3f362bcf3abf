using System.Globalization;
using System.Text;

namespace KvJournal.Server.Probe;

/// <summary>
/// What `kvjournal probe report` prints from a probe's minutes files: availability per UTC day
/// and per month for each target, each SLA threshold marked met or breached, and the minutes
/// that were not available; and a day's minutely availability and latency as an SVG chart.
/// </summary>
public static class ProbeReport
{
    public static string Tables(IReadOnlyList<MinuteRecord> minutes, IReadOnlyList<double> slas)
    {
        var text = new StringBuilder();
        Table(text, "day", minutes, m => m.Minute.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), slas, listMinutes: true);
        text.Append('\n');
        Table(text, "month", minutes, m => m.Minute.UtcDateTime.ToString("yyyy-MM", CultureInfo.InvariantCulture), slas, listMinutes: false);
        return text.ToString();
    }

    private static void Table(StringBuilder text, string period, IReadOnlyList<MinuteRecord> minutes, Func<MinuteRecord, string> periodOf, IReadOnlyList<double> slas, bool listMinutes)
    {
        text.Append(CultureInfo.InvariantCulture, $"{period,-10}  {"target",-12} {"minutes",8} {"available",10} {"availability",13}");
        foreach (double sla in slas) text.Append(CultureInfo.InvariantCulture, $"  {"SLA " + sla.ToString("0.###", CultureInfo.InvariantCulture) + "%",11}");
        text.Append('\n');
        var groups = new SortedDictionary<(string Period, string Target), List<MinuteRecord>>();
        foreach (var m in minutes)
        {
            var key = (periodOf(m), m.Target);
            if (!groups.TryGetValue(key, out var list)) groups.Add(key, list = []);
            list.Add(m);
        }
        foreach (var ((name, target), list) in groups)
        {
            int available = list.Count(m => m.Available);
            double percent = 100.0 * available / list.Count;
            text.Append(CultureInfo.InvariantCulture, $"{name,-10}  {target,-12} {list.Count,8} {available,10} {percent,12:0.0000}%");
            foreach (double sla in slas) text.Append(CultureInfo.InvariantCulture, $"  {(percent >= sla ? "met" : "breached"),11}");
            text.Append('\n');
            if (listMinutes && available < list.Count)
            {
                text.Append("  breaching minutes:");
                foreach (var m in list.Where(m => !m.Available))
                    text.Append(CultureInfo.InvariantCulture, $" {m.Minute.UtcDateTime:HH:mm} ({m.Succeeded}/{m.Probes})");
                text.Append('\n');
            }
        }
    }

    /// <summary>
    /// A day's minutes of one target as an SVG: a band per minute (green available, red not, none
    /// when nothing was measured) and the minute's p99 probe latency as a line above it.
    /// </summary>
    public static string Svg(IReadOnlyList<MinuteRecord> minutes, DateOnly day, string target)
    {
        const int left = 60, top = 30, width = 1440, plot = 240, band = 24;
        var of = minutes.Where(m => m.Target == target && DateOnly.FromDateTime(m.Minute.UtcDateTime) == day).ToList();
        double maxMs = Math.Max(1, of.Count == 0 ? 1 : of.Max(m => m.P99Ms));
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{left + width + 20}\" height=\"{top + plot + band + 50}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left}\" y=\"18\">{target} on {day:yyyy-MM-dd} (UTC): minutely availability and p99 probe latency (max {maxMs:0.0} ms)</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{plot}\" fill=\"none\" stroke=\"#999\"/>\n");
        for (int hour = 0; hour <= 24; hour += 3)
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left + hour * 60 - 10}\" y=\"{top + plot + band + 20}\">{hour:00}:00</text>\n");
        var points = new StringBuilder();
        foreach (var m in of)
        {
            int x = left + m.Minute.UtcDateTime.Hour * 60 + m.Minute.UtcDateTime.Minute;
            svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{x}\" y=\"{top + plot + 4}\" width=\"1\" height=\"{band - 4}\" fill=\"{(m.Available ? "#2a2" : "#d22")}\"><title>{m.Minute.UtcDateTime:HH:mm} {m.Succeeded}/{m.Probes}</title></rect>\n");
            points.Append(CultureInfo.InvariantCulture, $"{x},{top + plot - m.P99Ms / maxMs * (plot - 10):0.0} ");
        }
        if (points.Length > 0) svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"#36c\" points=\"{points.ToString().TrimEnd()}\"/>\n");
        svg.Append("</svg>\n");
        return svg.ToString();
    }
}
