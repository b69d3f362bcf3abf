using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>The executable's etcd-style flags, and the services that are declared but not served yet.</summary>
public sealed class ServerFlagsTests
{
    [Theory]
    [InlineData("unknown flag: --no-such-flag", "--no-such-flag=1")]
    [InlineData("https client URLs need --cert-file and --key-file", "--listen-client-urls", "https://127.0.0.1:1")]
    [InlineData("--client-cert-auth needs --trusted-ca-file", "--client-cert-auth")]
    [InlineData("invalid value \"soon\" for flag --watch-progress-notify-interval", "--watch-progress-notify-interval", "soon")]
    public async Task BadFlagsAreRejectedWithAClearMessage(string message, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(Paths.ServerDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2, p.ExitCode);
        Assert.Contains(message, stderr);
    }

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
    public async Task ServicesNotServedYetAnswerUnimplemented()
    {
        await using var kvj = await KvJournalProcess.StartAsync();
        var auth = new Auth.AuthClient(kvj.Channel);
        var ex = await Assert.ThrowsAsync<RpcException>(() => auth.AuthStatusAsync(new AuthStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(10)).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
    }
}
