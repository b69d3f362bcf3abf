using System.Globalization;
using System.Text;
using System.Text.Json;

namespace KvJournal.Server.Probe;

/// <summary>One probe of one target: write a canary, read it back linearizably, see it on a watch.</summary>
public readonly record struct ProbeResult(DateTimeOffset At, string Target, bool Ok, double PutMs, double GetMs, double WatchMs, string? Error);

/// <summary>
/// One minute of one target: how many probes ran and succeeded, and whether that is enough for the
/// minute to count as available (at least the configured share succeeded).
/// </summary>
public readonly record struct MinuteRecord(DateTimeOffset Minute, string Target, int Probes, int Succeeded, bool Available, double P50Ms, double P99Ms)
{
    /// <summary>A JSON line, as the minutes files hold them.</summary>
    public string ToJson()
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("minute", Minute.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm'Z'", CultureInfo.InvariantCulture));
            json.WriteString("target", Target);
            json.WriteNumber("probes", Probes);
            json.WriteNumber("succeeded", Succeeded);
            json.WriteBoolean("available", Available);
            json.WriteNumber("p50_ms", Math.Round(P50Ms, 3));
            json.WriteNumber("p99_ms", Math.Round(P99Ms, 3));
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public static MinuteRecord Parse(string line)
    {
        using var doc = JsonDocument.Parse(line);
        var e = doc.RootElement;
        var minute = DateTimeOffset.ParseExact(e.GetProperty("minute").GetString()!, "yyyy-MM-dd'T'HH:mm'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
        return new MinuteRecord(minute, e.GetProperty("target").GetString()!, e.GetProperty("probes").GetInt32(), e.GetProperty("succeeded").GetInt32(),
            e.GetProperty("available").GetBoolean(), e.GetProperty("p50_ms").GetDouble(), e.GetProperty("p99_ms").GetDouble());
    }
}

/// <summary>The files a probe writes under its directory, one per UTC day: every probe, and every closed minute.</summary>
public static class ProbeFiles
{
    public static string Probes(string dir, DateTimeOffset day) => Path.Combine(dir, $"probes-{day.UtcDateTime:yyyy-MM-dd}.jsonl");

    public static string Minutes(string dir, DateTimeOffset day) => Path.Combine(dir, $"minutes-{day.UtcDateTime:yyyy-MM-dd}.jsonl");

    public static string ProbeJson(ProbeResult r)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("at", r.At.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            json.WriteString("target", r.Target);
            json.WriteBoolean("ok", r.Ok);
            json.WriteNumber("put_ms", Math.Round(r.PutMs, 3));
            json.WriteNumber("get_ms", Math.Round(r.GetMs, 3));
            json.WriteNumber("watch_ms", Math.Round(r.WatchMs, 3));
            if (r.Error is not null) json.WriteString("error", r.Error);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Every minute record in the directory, oldest first.</summary>
    public static List<MinuteRecord> ReadMinutes(string dir)
    {
        var files = Directory.GetFiles(dir, "minutes-*.jsonl");
        Array.Sort(files, StringComparer.Ordinal);
        var minutes = new List<MinuteRecord>();
        foreach (var file in files)
            foreach (var line in File.ReadLines(file))
                if (line.Length > 0) minutes.Add(MinuteRecord.Parse(line));
        return minutes;
    }
}
