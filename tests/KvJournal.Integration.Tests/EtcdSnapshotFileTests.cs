using System.Buffers.Binary;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Reading etcd's own snapshot files (bbolt databases, made at test time by the reference etcd and
/// `etcdctl snapshot save`): `kvjournal snapshot status` prints what `etcdutl snapshot status`
/// prints, and a damaged file is a clear error, never a crash or a hang.
/// </summary>
public sealed class EtcdSnapshotFileTests : IAsyncLifetime
{
    private readonly string _dir = Paths.NewTempDir("etcd-snapshot");
    private string _snapshot = "";

    private static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    // A keyspace with enough keys for branch pages, values large enough for overflow pages,
    // deletes (tombstones), a txn, leased keys, a compaction, and auth's buckets.
    public async Task InitializeAsync()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var random = new Random(7);
        for (int i = 0; i < 1500; i++)
        {
            var value = new byte[i % 100 == 0 ? 40_000 : random.Next(50, 400)];
            random.NextBytes(value);
            await etcd.Kv.PutAsync(new PutRequest { Key = B($"/registry/pods/ns{i % 7}/pod-{i}"), Value = ByteString.CopyFrom(value) });
        }
        for (int i = 0; i < 1500; i += 10) await etcd.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = B($"/registry/pods/ns{i % 7}/pod-{i}") });
        await etcd.Kv.TxnAsync(new TxnRequest
        {
            Success = { new RequestOp { RequestPut = new PutRequest { Key = B("txn/a"), Value = B("1") } }, new RequestOp { RequestPut = new PutRequest { Key = B("txn/b"), Value = B("2") } } },
        });
        var lease = await new Lease.LeaseClient(etcd.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 });
        await etcd.Kv.PutAsync(new PutRequest { Key = B("leased"), Value = B("v"), Lease = lease.ID });
        await etcd.Kv.CompactAsync(new CompactionRequest { Revision = 800 });
        var auth = new Auth.AuthClient(etcd.Channel);
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "alice", Password = "pw" });
        await auth.RoleAddAsync(new AuthRoleAddRequest { Name = "reader" });
        _snapshot = Path.Combine(_dir, "etcd.db");
        var saved = await Etcdctl.RunAsync(etcd.Endpoint, null, "snapshot", "save", _snapshot);
        Assert.True(saved.ExitCode == 0, saved.Stderr);
    }

    public Task DisposeAsync()
    {
        Paths.DeleteDir(_dir);
        return Task.CompletedTask;
    }

    [Theory]
    [InlineData("json")]
    [InlineData("simple")]
    public async Task SnapshotStatusPrintsWhatEtcdutlPrints(string format)
    {
        var theirs = await Etcdutl.RunAsync("snapshot", "status", _snapshot, "-w", format);
        Assert.True(theirs.ExitCode == 0, theirs.Stderr);
        var (exit, ours) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), "snapshot", "status", _snapshot, "-w", format);
        Assert.Equal(0, exit);
        Assert.Equal(theirs.Stdout.Trim(), ours.Trim());
    }

    public static TheoryData<string, string> Damages => new()
    {
        { "truncated", "the file is truncated" },
        { "wrong magic", "wrong magic number" },
        { "meta checksum", "fails its checksum" },
        { "root page out of range", "is out of range" },
        { "empty", "no meta page" },
    };

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task ADamagedSnapshotIsAClearError(string damage, string says)
    {
        byte[] bytes = await File.ReadAllBytesAsync(_snapshot);
        const int pageSize = 4096, meta = 16;
        switch (damage)
        {
            case "truncated":
                bytes = bytes[..(bytes.Length / 2)];
                break;
            case "wrong magic":
                bytes[meta] ^= 0xff;
                bytes[pageSize + meta] ^= 0xff;
                break;
            case "meta checksum":
                bytes[meta + 56] ^= 0x01;
                bytes[pageSize + meta + 56] ^= 0x01;
                break;
            case "root page out of range":
                // Both metas name a root page past the end, with checksums that still hold.
                foreach (int at in new[] { meta, pageSize + meta })
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at + 16), 1_000_000);
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at + 56), Fnv1a64(bytes.AsSpan(at, 56)));
                }
                break;
            case "empty":
                bytes = [];
                break;
        }
        string file = Path.Combine(_dir, "damaged.db");
        await File.WriteAllBytesAsync(file, bytes);
        var (exit, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), "snapshot", "status", file);
        Assert.Equal(1, exit);
        Assert.Contains(says, output);
        Assert.DoesNotContain("Unhandled exception", output);
    }

    private static ulong Fnv1a64(ReadOnlySpan<byte> bytes)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in bytes) hash = (hash ^ b) * 1099511628211UL;
        return hash;
    }
}
