using System.Diagnostics;

namespace KvJournal.Integration.Tests.Infrastructure;

/// <summary>Runs etcd's own etcdctl (v3 API) against one endpoint.</summary>
public static class Etcdctl
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static async Task<Result> RunAsync(string endpoint, string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo(Paths.Etcdctl)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["ETCDCTL_API"] = "3";
        psi.ArgumentList.Add($"--endpoints={endpoint}");
        psi.ArgumentList.Add("--command-timeout=20s");
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        if (stdin is not null) await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill();
            throw new TimeoutException($"etcdctl {string.Join(' ', args)} did not finish in 60 s");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }
}
