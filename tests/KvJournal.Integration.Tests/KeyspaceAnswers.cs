using Etcdserverpb;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>
/// Moving a keyspace between etcd and KvJournal in tests: saving and restoring a snapshot, and a
/// server's answers as comparable lines (a range, the watch history of a range, the users) so
/// both sides can be checked to answer alike.
/// </summary>
internal static class KeyspaceAnswers
{
    public static List<string> Kvs(RangeResponse r) =>
        [$"rev {r.Header.Revision} count {r.Count}", .. r.Kvs.Select(kv => $"{kv.Key.ToStringUtf8()}={kv.Value.ToStringUtf8()} c{kv.CreateRevision} m{kv.ModRevision} v{kv.Version} l{kv.Lease}")];

    /// <summary>Every event on [key, rangeEnd) from revision <paramref name="from"/> up to <paramref name="head"/>, with prev_kv.</summary>
    public static async Task<List<string>> HistoryAsync(ServerProcess server, string key, string rangeEnd, long from, long head)
    {
        await using var watch = new WatchSession(server.Channel);
        var created = await watch.WatchAsync(WatchSession.Create(key, rangeEnd, startRevision: from, prevKv: true));
        var events = new List<string>();
        long seen = 0;
        while (seen < head)
        {
            WatchResponse response;
            try { response = await watch.NextAsync(TimeSpan.FromSeconds(10)); }
            catch (TimeoutException) { throw new InvalidOperationException($"stuck at {seen} of {head} after {created}:\n{string.Join("\n", events)}"); }
            foreach (var e in response.Events)
            {
                events.Add($"{e.Type} {e.Kv.Key.ToStringUtf8()}={e.Kv.Value.ToStringUtf8()} m{e.Kv.ModRevision} v{e.Kv.Version} prev {e.PrevKv?.Value.ToStringUtf8()} m{e.PrevKv?.ModRevision}");
                seen = e.Kv.ModRevision;
            }
        }
        Assert.True(created.Created);
        return events;
    }

    /// <summary>`etcdctl snapshot save` from <paramref name="server"/> into <paramref name="dir"/>; returns the file.</summary>
    public static async Task<string> SaveSnapshotAsync(ServerProcess server, string dir, params string[] credentials)
    {
        string snapshot = Path.Combine(dir, "snapshot.db");
        var saved = await Etcdctl.RunAsync(server.Endpoint, null, [.. credentials, "snapshot", "save", snapshot]);
        Assert.True(saved.ExitCode == 0, saved.Stderr);
        return snapshot;
    }

    /// <summary>`kvjournal snapshot restore` of <paramref name="snapshot"/> into a new data dir under <paramref name="dir"/>; returns it.</summary>
    public static async Task<string> RestoreIntoKvJournalAsync(string snapshot, string dir)
    {
        string dataDir = Path.Combine(dir, "member");
        var (exit, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), "snapshot", "restore", snapshot, "--data-dir", dataDir);
        Assert.True(exit == 0, output);
        return dataDir;
    }

    /// <summary>Two keys, root, a reader role on app/, alice with it, and auth on: what a move must carry over.</summary>
    public static async Task SetUpUsersAsync(ServerProcess server)
    {
        var auth = new Auth.AuthClient(server.Channel);
        await server.Kv.PutAsync(new PutRequest { Key = B("app/a"), Value = B("1") });
        await server.Kv.PutAsync(new PutRequest { Key = B("secret"), Value = B("2") });
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "root", Password = "rootpw" });
        await auth.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "root", Role = "root" });
        await auth.RoleAddAsync(new AuthRoleAddRequest { Name = "reader" });
        await auth.RoleGrantPermissionAsync(new AuthRoleGrantPermissionRequest
        {
            Name = "reader",
            Perm = new Authpb.Permission { PermType = Authpb.Permission.Types.Type.Read, Key = B("app/"), RangeEnd = B("app0") },
        });
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "alice", Password = "alicepw" });
        await auth.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "alice", Role = "reader" });
        await auth.AuthEnableAsync(new AuthEnableRequest());
    }

    /// <summary>The users <see cref="SetUpUsersAsync"/> made log in with their passwords and keep their permissions.</summary>
    public static async Task AssertUsersAsync(ServerProcess server)
    {
        var client = new Auth.AuthClient(server.Channel);
        var headers = new Metadata { { "token", (await client.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "alicepw" })).Token } };
        Assert.Equal("1", (await server.Kv.RangeAsync(new RangeRequest { Key = B("app/a") }, headers)).Kvs[0].Value.ToStringUtf8());
        var denied = await Assert.ThrowsAsync<RpcException>(() => server.Kv.RangeAsync(new RangeRequest { Key = B("secret") }, headers).ResponseAsync);
        Assert.Equal("etcdserver: permission denied", denied.Status.Detail);
        var wrong = await Assert.ThrowsAsync<RpcException>(() => client.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "nope" }).ResponseAsync);
        Assert.Equal("etcdserver: authentication failed, invalid user ID or password", wrong.Status.Detail);
        var root = new Metadata { { "token", (await client.AuthenticateAsync(new AuthenticateRequest { Name = "root", Password = "rootpw" })).Token } };
        Assert.True((await client.AuthStatusAsync(new AuthStatusRequest(), root)).Enabled);
        Assert.Equal(["alice", "root"], (await client.UserListAsync(new AuthUserListRequest(), root)).Users);
        Assert.Equal(["reader"], (await client.RoleListAsync(new AuthRoleListRequest(), root)).Roles);
    }

    private static Google.Protobuf.ByteString B(string s) => Google.Protobuf.ByteString.CopyFromUtf8(s);
}
