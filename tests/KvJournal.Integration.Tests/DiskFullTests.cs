using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// A member whose data dir is on a small tmpfs that fills up: writes fail at once with etcd's
/// error, nothing acknowledged is lost, NOSPACE is raised and logged, serializable reads go on,
/// and once space is freed writes resume by themselves, with no restart. Mounting needs root
/// (CI runs as root).
/// </summary>
public sealed class DiskFullTests : IAsyncLifetime
{
    private readonly string _mount = Paths.NewTempDir("kvj-full");

    public Task InitializeAsync() => RunAsync("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", _mount);

    public async Task DisposeAsync()
    {
        await RunAsync("umount", "-l", _mount);
        Paths.DeleteDir(_mount);
    }

    private static async Task RunAsync(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{program} {string.Join(' ', args)}: {stderr} (the disk-full test mounts a tmpfs and needs root)");
    }

    private static PutRequest Put(string key, int bytes) => new() { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(new byte[bytes]) };

    [Fact]
    public async Task AFullDiskFailsWritesAtOnceLosesNothingAndHealsWhenSpaceIsFreed()
    {
        string dataDir = Path.Combine(_mount, "data");
        await using var kvj = await KvJournalProcess.StartAsync(dataDir);
        var maintenance = new Maintenance.MaintenanceClient(kvj.Channel);
        // A lease that falls due while the disk is full expires once the disk takes writes again.
        var lease = await new Lease.LeaseClient(kvj.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 3 });
        await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("/full/leased"), Value = ByteString.CopyFromUtf8("v"), Lease = lease.ID });

        // Leave about a mebibyte free, then write 64 KiB values until the journal cannot take one.
        string filler = Path.Combine(_mount, "filler");
        await using (var file = new FileStream(filler, FileMode.CreateNew))
        {
            long room = new DriveInfo(_mount).AvailableFreeSpace - (1 << 20);
            var chunk = new byte[1 << 20];
            for (long left = room; left > 0; left -= chunk.Length) file.Write(chunk, 0, (int)Math.Min(chunk.Length, left));
        }
        var acknowledged = new List<string>();
        RpcException? refused = null;
        for (int i = 0; i < 100 && refused is null; i++)
        {
            try
            {
                await kvj.Kv.PutAsync(Put($"/full/{i}", 64 * 1024), deadline: DateTime.UtcNow.AddSeconds(20));
                acknowledged.Add($"/full/{i}");
            }
            catch (RpcException ex)
            {
                refused = ex;
            }
        }
        Assert.NotNull(refused);
        Assert.Equal((StatusCode.Unavailable, "etcdserver: request timed out, journal unavailable"), (refused.StatusCode, refused.Status.Detail));

        // Said on /health, in the alarm list and in the log; serializable reads still served.
        var health = await Curl.GetAsync($"http://{kvj.Endpoint}/health");
        Assert.Equal((503, "{\"health\":\"false\",\"reason\":\"ALARM NOSPACE\"}"), (health.Status, health.Body.TrimEnd('\n')));
        var alarms = await maintenance.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Get });
        Assert.Contains(alarms.Alarms, a => a.Alarm == AlarmType.Nospace);
        await kvj.WaitForOutputAsync("a commit failed (the disk is full)");
        var read = await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(acknowledged[0]), Serializable = true });
        Assert.Equal(1, read.Count);

        // Freed: the next write goes through by itself within a bounded time.
        File.Delete(filler);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                await kvj.Kv.PutAsync(Put("/full/after", 100), deadline: DateTime.UtcNow.AddSeconds(5));
                break;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
        await kvj.WaitForOutputAsync("journal: writes resume");
        deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/full/leased") })).Count > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the lease due while the disk was full did not expire after it healed");
            await Task.Delay(100);
        }
        health = await Curl.GetAsync($"http://{kvj.Endpoint}/health");
        Assert.Equal(200, health.Status);
        alarms = await maintenance.AlarmAsync(new AlarmRequest { Action = AlarmRequest.Types.AlarmAction.Get });
        Assert.Empty(alarms.Alarms);

        // Everything acknowledged, before and after, is there, and survives a kill -9.
        await kvj.KillAsync();
        await using var restarted = await KvJournalProcess.StartAsync(dataDir);
        foreach (string key in acknowledged.Append("/full/after"))
        {
            var r = await restarted.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8(key) });
            Assert.True(r.Count == 1, $"{key} was acknowledged but is gone");
        }
        // No revision was given twice across the failure and the reopen.
        var all = await restarted.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/full/"), RangeEnd = ByteString.CopyFromUtf8("/full0"), KeysOnly = true });
        Assert.Equal(all.Kvs.Count, all.Kvs.Select(kv => kv.ModRevision).Distinct().Count());
    }
}
