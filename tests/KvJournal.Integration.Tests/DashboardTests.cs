using System.Text.Json;
using System.Text.RegularExpressions;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>Every metric the Grafana dashboard (tools/grafana) queries is exported: by a member's /metrics or by the probe's.</summary>
public sealed partial class DashboardTests
{
    [GeneratedRegex(@"\{[^}]*\}|by \([^)]*\)|""[^""]*""")]
    private static partial Regex LabelsAndStrings();

    [GeneratedRegex(@"\b(?:etcd|kvjournal|grpc|dotnet)_[a-zA-Z0-9_]+")]
    private static partial Regex MetricName();

    private static SortedSet<string> QueriedMetrics()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Path.Combine(Paths.RepoRoot, "tools", "grafana", "kvjournal-dashboard.json")));
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var panel in dashboard.RootElement.GetProperty("panels").EnumerateArray())
            foreach (var target in panel.GetProperty("targets").EnumerateArray())
                foreach (Match m in MetricName().Matches(LabelsAndStrings().Replace(target.GetProperty("expr").GetString()!, " ")))
                    names.Add(Regex.Replace(m.Value, "_(bucket|sum|count)$", ""));
        return names;
    }

    [Fact]
    public async Task EveryMetricTheDashboardQueriesIsExported()
    {
        var queried = QueriedMetrics();
        Assert.Contains("kvjournal_journal_append_duration_seconds", queried);
        Assert.Contains("kvjournal_probe_availability_ratio", queried);

        await using var member = await KvJournalProcess.StartAsync();
        using var http = new HttpClient();
        string exported = await http.GetStringAsync($"http://127.0.0.1:{member.Port}/metrics");
        int metricsPort = Ports.Free();
        string results = Paths.NewTempDir("dashboard-probe");
        try
        {
            var probing = KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), "probe", "--endpoints", $"default=127.0.0.1:{member.Port}", "--dir", results,
                "--listen-metrics-urls", $"http://127.0.0.1:{metricsPort}", "--duration", "4s");
            string probe = await Poll.UntilAsync(async () =>
            {
                try { return await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"); }
                catch (HttpRequestException) { return ""; }
            }, text => text.Contains("result=\"ok\"", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "the probe's metrics");
            Assert.Equal(0, (await probing).ExitCode);
            var missing = queried.Where(name => !exported.Contains($"# TYPE {name} ", StringComparison.Ordinal) && !probe.Contains($"# TYPE {name} ", StringComparison.Ordinal)).ToList();
            Assert.True(missing.Count == 0, $"not exported: {string.Join(", ", missing)}");
        }
        finally
        {
            Paths.DeleteDir(results);
        }
    }
}
