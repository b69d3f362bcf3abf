using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// The availability probe against a real member that is stopped (kill -9) for two whole UTC
/// minutes: exactly those minutes count as unavailable, the minutes around them as available,
/// and `probe report` lists those two as the breaching minutes and draws the day.
/// </summary>
public sealed class ProbeTests
{
    private static async Task UntilWallClockAsync(DateTimeOffset at)
    {
        var wait = at - DateTimeOffset.UtcNow;
        if (wait > TimeSpan.Zero) await Task.Delay(wait); // the condition is the wall clock itself: minutes are UTC minutes
    }

    [Fact]
    public async Task MinutesAMemberIsStoppedForCountAsUnavailableAndNoOthers()
    {
        int port = Ports.Free();
        string dataDir = Paths.NewTempDir("probe-member");
        string results = Paths.NewTempDir("probe-results");
        var member = await KvJournalProcess.StartOnPortAsync(port, dataDir);
        try
        {
            var now = DateTimeOffset.UtcNow;
            // The minute before the outage gets at least a few seconds of probes.
            var down = KvJournal.Server.Probe.MinuteLedger.Floor(now).AddMinutes(now.Second > 50 ? 2 : 1);
            // The minute after the outage is closed when the probe stops, 40 s into it: the restart
            // 0.3 s into it and the probe's reconnection cost a few probes (3 of 25 under a loaded CI
            // run, below the 90% a minute needs), which 40 probes absorb.
            var end = down.AddMinutes(2).AddSeconds(40);
            var probing = KvJournalProcess.RunToExitAsync(TimeSpan.FromMinutes(6), "probe", "--endpoints", $"default=127.0.0.1:{port}", "--dir", results,
                "--duration", $"{(int)Math.Ceiling((end - DateTimeOffset.UtcNow).TotalSeconds)}s");

            await UntilWallClockAsync(down.AddSeconds(1));
            await member.KillAsync();
            await member.DisposeAsync();
            await UntilWallClockAsync(down.AddMinutes(2).AddMilliseconds(300));
            member = await KvJournalProcess.StartOnPortAsync(port, dataDir);

            var (exit, output) = await probing;
            Assert.True(exit == 0, output);
            var minutes = KvJournal.Server.Probe.ProbeFiles.ReadMinutes(results).ToDictionary(m => m.Minute);
            string Describe() => string.Join("\n", minutes.Values.Select(m => m.ToJson()));
            Assert.True(minutes[down.AddMinutes(-1)].Available, Describe());
            Assert.False(minutes[down].Available, Describe());
            Assert.False(minutes[down.AddMinutes(1)].Available, Describe());
            Assert.True(minutes[down.AddMinutes(2)].Available, Describe());
            Assert.Equal(2, minutes.Values.Count(m => !m.Available));

            string svg = Path.Combine(results, "day.svg");
            var (reported, report) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(30), "probe", "report", "--dir", results, "--svg", svg);
            Assert.True(reported == 0, report);
            Assert.Contains($"breaching minutes: {down:HH:mm} (", report);
            Assert.Contains($"{down.AddMinutes(1):HH:mm} (", report);
            Assert.Contains("breached", report);
            Assert.StartsWith("<svg", await File.ReadAllTextAsync(svg));
        }
        finally
        {
            await member.DisposeAsync();
            Paths.DeleteDir(dataDir);
            Paths.DeleteDir(results);
        }
    }
}
