using System.Diagnostics;

namespace KvJournal.Testing;

/// <summary>Runs etcd's own etcdutl (offline tools on a snapshot or data dir).</summary>
public static class Etcdutl
{
    public static async Task<Etcdctl.Result> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo(Paths.Etcdutl) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
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
            throw new TimeoutException($"etcdutl {string.Join(' ', args)} did not finish in 60 s");
        }
        return new Etcdctl.Result(p.ExitCode, await stdout, await stderr);
    }
}
