using System.Diagnostics;
using System.Globalization;

namespace KvJournal.Testing;

/// <summary>curl, as operators probe etcd's HTTP endpoints.</summary>
public static class Curl
{
    /// <summary>The HTTP status (0 when no response, e.g. a refused TLS handshake) and the body.</summary>
    public sealed record Result(int Status, string Body);

    public static async Task<Result> GetAsync(string url, params string[] options)
    {
        var psi = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-s", "--max-time", "20", "-w", "\n%{http_code}" }.Concat(options).Append(url)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        int cut = output.LastIndexOf('\n');
        return new Result(int.Parse(output[(cut + 1)..], CultureInfo.InvariantCulture), output[..cut]);
    }
}
