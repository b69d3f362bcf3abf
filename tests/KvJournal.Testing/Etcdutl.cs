using System.Diagnostics;

namespace KvJournal.Testing;

/// <summary>Runs etcd's own etcdutl (offline tools on a snapshot or data dir).</summary>
public static class Etcdutl
{
    public static Task<Etcdctl.Result> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo(Paths.Etcdutl) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Etcdctl.RunToExitAsync(psi, stdin: null);
    }
}
