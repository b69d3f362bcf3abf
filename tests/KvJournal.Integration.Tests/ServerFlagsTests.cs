using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>The executable's etcd-style flags.</summary>
public sealed class ServerFlagsTests
{
    [Theory]
    [InlineData("unknown flag: --no-such-flag", "--no-such-flag=1")]
    [InlineData("https client URLs need --cert-file and --key-file", "--listen-client-urls", "https://127.0.0.1:1")]
    [InlineData("--client-cert-auth needs --trusted-ca-file", "--client-cert-auth")]
    [InlineData("invalid value \"soon\" for flag --watch-progress-notify-interval", "--watch-progress-notify-interval", "soon")]
    public Task BadFlagsAreRejectedWithAClearMessage(string message, params string[] args) => AssertRefusedAtStartAsync(message, args);

    [Fact]
    public async Task RequestLimitsComeFromFlags()
    {
        await using var kvj = await KvJournalProcess.StartAsync(null, "--max-txn-ops", "2", "--max-request-bytes=1024");
        var threeOps = new TxnRequest();
        for (int i = 0; i < 3; i++) threeOps.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = ByteString.CopyFromUtf8($"k{i}") } });
        var ex = await Assert.ThrowsAsync<RpcException>(() => kvj.Kv.TxnAsync(threeOps).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "etcdserver: too many operations in txn request"), (ex.StatusCode, ex.Status.Detail));

        ex = await Assert.ThrowsAsync<RpcException>(() => kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("k"), Value = ByteString.CopyFrom(new byte[2048]) }).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "etcdserver: request is too large"), (ex.StatusCode, ex.Status.Detail));

        var ok = await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("k"), Value = ByteString.CopyFrom(new byte[512]) });
        Assert.Equal(2, ok.Header.Revision);
        Assert.NotEqual(0UL, ok.Header.ClusterId);
        Assert.NotEqual(0UL, ok.Header.MemberId);
    }

    [Fact]
    public async Task AuthTokensExpireAfterAuthTokenTtlWithoutUse()
    {
        await using var kvj = await KvJournalProcess.StartAsync(null, "--auth-token", "simple", "--auth-token-ttl", "2", "--bcrypt-cost", "10");
        var auth = new Auth.AuthClient(kvj.Channel);
        await auth.UserAddAsync(new AuthUserAddRequest { Name = "root", Password = "pw" });
        await auth.UserGrantRoleAsync(new AuthUserGrantRoleRequest { User = "root", Role = "root" });
        await auth.AuthEnableAsync(new AuthEnableRequest());
        string token = (await auth.AuthenticateAsync(new AuthenticateRequest { Name = "root", Password = "pw" })).Token;
        var withToken = new Metadata { { "token", token } };
        await kvj.Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("k"), Value = ByteString.CopyFromUtf8("v") }, withToken);

        // Left unused, the token lapses after its TTL; the next use is etcd's "invalid auth token".
        var clock = Stopwatch.StartNew();
        var expired = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(2.5));
            await kvj.Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("k") }, withToken);
        });
        Assert.Equal((StatusCode.Unauthenticated, "etcdserver: invalid auth token"), (expired.StatusCode, expired.Status.Detail));
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(2));
    }

    [Fact]
    public Task JwtAuthTokensAreRefusedAtStart() =>
        AssertRefusedAtStartAsync("KvJournal serves simple tokens only", ["--auth-token", "jwt,pub-key=a.pub,priv-key=a.key,sign-method=RS256"]);

    [Fact]
    public async Task AClientPortInUseIsRefusedAtStartWithAMessageNotACrash()
    {
        await using var first = await KvJournalProcess.StartAsync();
        string dir = Paths.NewTempDir("kvj-busy");
        try
        {
            var (exitCode, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), KvJournalProcess.MemberArgs(first.Port, dir));
            Assert.Equal(1, exitCode);
            Assert.Contains($"kvjournal: cannot start member kvj-test: Failed to bind to address http://127.0.0.1:{first.Port}: address already in use", output);
            Assert.DoesNotContain("Unhandled exception", output);
        }
        finally
        {
            Paths.DeleteDir(dir);
        }
    }

    // The server, started with these flags, exits with code 2 and says why.
    private static async Task AssertRefusedAtStartAsync(string message, string[] args)
    {
        var (exitCode, output) = await KvJournalProcess.RunToExitAsync(TimeSpan.FromSeconds(60), args);
        Assert.Equal(2, exitCode);
        Assert.Contains(message, output);
    }
}
