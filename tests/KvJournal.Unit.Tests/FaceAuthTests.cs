using Etcdserverpb;
using KvJournal.Member.Face;
using KvJournal.Storage.Apply;
using Xunit;
using static KvJournal.Unit.Tests.FaceHost;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Who may do what once auth is on, through the shard's face: reads and admin calls are checked
/// before anything runs, writes where they apply; each refusal is etcd's error.
/// </summary>
public sealed class FaceAuthTests : IAsyncLifetime
{
    private FaceHost _host = null!;
    private ShardServer Face => _host.Face;
    private static readonly CancellationToken None = CancellationToken.None;

    public async Task InitializeAsync()
    {
        _host = await StartAsync();
        var nobody = CallerIdentity.None;
        await Face.PutAsync(new PutRequest { Key = B("app/a"), Value = B("1") }, nobody, None);
        await Face.UserAddAsync(new AuthUserAddRequest { Name = "root", Password = "rootpw" }, nobody, None);
        await Face.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "root", Role = "root" }, nobody, None);
        await Face.RoleAddAsync(new AuthRoleAddRequest { Name = "reader" }, nobody, None);
        await Face.RoleGrantPermissionAsync(new AuthRoleGrantPermissionRequest
        {
            Name = "reader",
            Perm = new Authpb.Permission { PermType = Authpb.Permission.Types.Type.Read, Key = B("app/"), RangeEnd = B("app0") },
        }, nobody, None);
        await Face.UserAddAsync(new AuthUserAddRequest { Name = "alice", Password = "alicepw" }, nobody, None);
        await Face.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "alice", Role = "reader" }, nobody, None);
        await Face.AuthEnableAsync(new AuthEnableRequest(), nobody, None);
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    private async Task<CallerIdentity> LoginAsync(string name, string password) =>
        new((await Face.AuthenticateAsync(new AuthenticateRequest { Name = name, Password = password }, CallerIdentity.None, None)).Token, null);

    private static async Task<EtcdError> RefusalAsync(Func<Task> call) => (await Assert.ThrowsAsync<EtcdException>(call)).Error;

    [Fact]
    public async Task AReaderReadsItsRangeOnlyAndCannotWrite()
    {
        var alice = await LoginAsync("alice", "alicepw");
        Assert.Equal("1", (await Face.RangeAsync(new RangeRequest { Key = B("app/a") }, alice, None)).Kvs[0].Value.ToStringUtf8());
        Assert.Equal(EtcdError.PermissionDenied, await RefusalAsync(() => Face.RangeAsync(new RangeRequest { Key = B("other") }, alice, None)));
        // A write is checked where it applies, and changes nothing.
        Assert.Equal(EtcdError.PermissionDenied, await RefusalAsync(() => Face.PutAsync(new PutRequest { Key = B("app/a"), Value = B("2") }, alice, None)));
        Assert.Equal("1", (await Face.RangeAsync(new RangeRequest { Key = B("app/a") }, alice, None)).Kvs[0].Value.ToStringUtf8());
    }

    [Fact]
    public async Task NoCredentialsABadTokenAndAWrongPasswordAreEtcdsErrors()
    {
        Assert.Equal(EtcdError.UserEmpty, await RefusalAsync(() => Face.RangeAsync(new RangeRequest { Key = B("app/a") }, CallerIdentity.None, None)));
        Assert.Equal(EtcdError.InvalidAuthToken, await RefusalAsync(() => Face.RangeAsync(new RangeRequest { Key = B("app/a") }, new CallerIdentity("nosuchtoken.1", null), None)));
        Assert.Equal(EtcdError.AuthFailed, await RefusalAsync(() => Face.AuthenticateAsync(new AuthenticateRequest { Name = "alice", Password = "wrong" }, CallerIdentity.None, None)));
    }

    [Fact]
    public async Task AdminCallsTakeTheRootRole()
    {
        var alice = await LoginAsync("alice", "alicepw");
        var root = await LoginAsync("root", "rootpw");
        Assert.Equal(EtcdError.PermissionDenied, await RefusalAsync(() => Face.CompactAsync(new CompactionRequest { Revision = 1 }, alice, None)));
        Assert.Equal(EtcdError.PermissionDenied, await RefusalAsync(() => Face.UserListAsync(new AuthUserListRequest(), alice, None)));
        Assert.Throws<EtcdException>(() => Face.Status(new StatusRequest(), alice));
        Assert.Equal(["alice", "root"], (await Face.UserListAsync(new AuthUserListRequest(), root, None)).Users);
        Assert.True(Face.Status(new StatusRequest(), root).Header.Revision > 0);
    }

    [Fact]
    public async Task AWatchOnARangeTheCallerMayNotReadIsCanceledWithTheGrpcErrorText()
    {
        var alice = await LoginAsync("alice", "alicepw");
        await using var watch = FaceWatch.Open(Face, alice);
        watch.Send(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = B("other") } });
        var refused = await watch.NextAsync();
        Assert.True(refused.Canceled);
        Assert.Equal("rpc error: code = PermissionDenied desc = etcdserver: permission denied", refused.CancelReason);
    }
}
