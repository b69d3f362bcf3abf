using System.Collections.Concurrent;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>Every acknowledged write survives kill -9 of the member, with the revision it was acknowledged at.</summary>
public sealed class CrashTests
{
    private const int Writers = 16;
    private const int AckedBeforeKill = 2000;
    private const int MaxPutsPerWriter = 5000; // bound: the load stops by itself even if the kill never came
    // One put at a time is one journal commit each: more than the embedded journal makes between two
    // writes of its commit metadata file (1,024), so recovery has to find the later commits in the log.
    private const int SequentialPuts = 1500;

    [Fact]
    public async Task AcknowledgedWritesSurviveKill9()
    {
        string dataDir = Paths.NewTempDir("crash");
        try
        {
            await WriteKillRestartAndVerify(dataDir);
        }
        finally
        {
            Paths.DeleteDir(dataDir);
        }
    }

    private static async Task WriteKillRestartAndVerify(string dataDir)
    {
        var acked = new ConcurrentDictionary<string, (long Revision, string Value)>();
        var enoughAcked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        await using (var member = await KvJournalProcess.StartAsync(dataDir))
        {
            // Records a put as acknowledged once the member answered it.
            async Task PutAcked(string key, string value)
            {
                var r = await member.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8(value) });
                acked[key] = (r.Header.Revision, value);
            }

            for (int i = 0; i < SequentialPuts; i++) await PutAcked($"crash/seq/{i:D5}", $"value-seq-{i}");
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
            {
                for (int i = 0; i < MaxPutsPerWriter; i++)
                {
                    try
                    {
                        await PutAcked($"crash/{w:D2}/{i:D5}", $"value-{w}-{i}");
                        if (acked.Count >= SequentialPuts + AckedBeforeKill) enoughAcked.TrySetResult();
                    }
                    catch (RpcException)
                    {
                        return; // the member is gone: this write is unacknowledged, and so are the rest
                    }
                }
            })).ToArray();

            await enoughAcked.Task.WaitAsync(TimeSpan.FromMinutes(3));
            await member.KillAsync(); // SIGKILL while the writers are still writing
            await Task.WhenAll(writers);
        }

        Assert.True(acked.Count >= SequentialPuts + AckedBeforeKill);
        var revisions = acked.Values.Select(v => v.Revision).ToList();
        Assert.Equal(revisions.Count, revisions.Distinct().Count()); // one revision per acknowledged put

        await using var restarted = await KvJournalProcess.StartAsync(dataDir);
        var all = await restarted.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("crash/"), RangeEnd = ByteString.CopyFromUtf8("crash0") });
        var found = all.Kvs.ToDictionary(kv => kv.Key.ToStringUtf8());
        foreach (var (key, (revision, value)) in acked)
        {
            Assert.True(found.TryGetValue(key, out var kv), $"acknowledged {key}@{revision} lost after kill -9");
            Assert.Equal(revision, kv.ModRevision);
            Assert.Equal(value, kv.Value.ToStringUtf8());
        }
        Assert.True(all.Header.Revision >= revisions.Max());

        // The restarted member carries on from the recovered revision.
        var next = await restarted.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("after-crash"), Value = ByteString.CopyFromUtf8("v") });
        Assert.Equal(all.Header.Revision + 1, next.Header.Revision);
    }
}
