using System.Diagnostics;

namespace KvJournal.Testing;

/// <summary>Runs etcd's own etcdctl (v3 API) against one endpoint.</summary>
public static class Etcdctl
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        /// <summary>
        /// What must match between two servers: exit code, stdout without the header fields that
        /// name the member (cluster id, member id, raft term), and the final "Error:" line (the
        /// client's retry logs carry addresses and times).
        /// </summary>
        public string Normalized()
        {
            var stdout = Stdout.Split('\n')
                .Where(l => !l.StartsWith("\"ClusterID\"", StringComparison.Ordinal) && !l.StartsWith("\"MemberID\"", StringComparison.Ordinal) && !l.StartsWith("\"RaftTerm\"", StringComparison.Ordinal));
            var error = Stderr.Split('\n').Where(l => l.StartsWith("Error:", StringComparison.Ordinal));
            return $"exit {ExitCode} | {string.Join("\\n", stdout)} | {string.Join("\\n", error)}";
        }
    }

    /// <summary>etcdctl against <paramref name="endpoint"/> with every stream redirected.</summary>
    internal static ProcessStartInfo StartInfo(string endpoint, IEnumerable<string> args)
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
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }

    /// <summary>
    /// One line of a test's etcdctl script: space-separated arguments ('' = an empty one), then
    /// optionally " &lt;&lt; " and what goes on stdin (looked up through <paramref name="stdin"/> when given).
    /// </summary>
    public static (string[] Args, string? Stdin) ScriptLine(string line, Func<string, string>? stdin = null)
    {
        string? input = null;
        int redirect = line.IndexOf(" << ", StringComparison.Ordinal);
        if (redirect >= 0)
        {
            input = line[(redirect + 4)..];
            if (stdin is not null) input = stdin(input);
            line = line[..redirect];
        }
        return (line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(a => a == "''" ? "" : a).ToArray(), input);
    }

    /// <summary>
    /// Runs every line against the reference etcd and then against kvjournal, in order; returns a
    /// description of the first line whose normalized results differ, or null when all match.
    /// </summary>
    public static async Task<string?> FirstDifferenceAsync(string etcdEndpoint, string kvjournalEndpoint, IEnumerable<string> script, Func<string, string>? stdin = null)
    {
        foreach (var line in script)
        {
            var (args, input) = ScriptLine(line, stdin);
            var theirs = (await RunAsync(etcdEndpoint, input, args)).Normalized();
            var ours = (await RunAsync(kvjournalEndpoint, input, args)).Normalized();
            if (theirs != ours) return $"etcdctl {line}\n etcd:      {theirs}\n kvjournal: {ours}";
        }
        return null;
    }

    public static Task<Result> RunAsync(string endpoint, string? stdin, params string[] args) =>
        RunToExitAsync(StartInfo(endpoint, ["--command-timeout=20s", .. args]), stdin);

    /// <summary>Runs one of etcd's tools to its exit (within 60 s, else it is killed) and returns what it printed.</summary>
    internal static async Task<Result> RunToExitAsync(ProcessStartInfo psi, string? stdin)
    {
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
            throw new TimeoutException($"{Path.GetFileName(psi.FileName)} {string.Join(' ', psi.ArgumentList)} did not finish in 60 s");
        }
        return new Result(p.ExitCode, await stdout, await stderr);
    }
}

/// <summary>
/// A long-running etcdctl (watch, watch -i) whose output lines the test reads as they come; the
/// process is killed by its PID on dispose.
/// </summary>
public sealed class EtcdctlSession : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();

    public EtcdctlSession(string endpoint, params string[] args)
    {
        _process = new Process { StartInfo = Etcdctl.StartInfo(endpoint, args) };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _lines.Writer.TryWrite(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _lines.Writer.TryWrite("stderr: " + e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public async Task SendLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>
    /// Collects output lines up to and including the first one <paramref name="last"/> accepts.
    /// <paramref name="poke"/>, when given, runs at the start and again whenever 250 ms pass
    /// without output (e.g. to repeat a progress request the server ignored).
    /// </summary>
    public async Task<List<string>> ReadUntilAsync(Func<string, bool> last, Func<Task>? poke = null, TimeSpan? wait = null)
    {
        var lines = new List<string>();
        var deadline = DateTime.UtcNow + (wait ?? TimeSpan.FromSeconds(30));
        if (poke is not null) await poke();
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException("etcdctl output so far:\n" + string.Join('\n', lines));
            using var cts = new CancellationTokenSource(poke is null ? left : TimeSpan.FromMilliseconds(Math.Min(250, left.TotalMilliseconds)));
            string line;
            try
            {
                line = await _lines.Reader.ReadAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                if (poke is not null) await poke();
                continue;
            }
            lines.Add(line);
            if (last(line)) return lines;
        }
    }

    public bool HasExited => _process.HasExited;

    /// <summary>Sends SIGINT, as Ctrl-C would: etcdctl lock and elect then release and exit.</summary>
    public void Interrupt()
    {
        if (!_process.HasExited && SendSignal(_process.Id, 2) != 0) throw new InvalidOperationException($"kill -INT {_process.Id} failed");
    }

    /// <summary>Kills the process (SIGKILL) and waits for it: nothing is released, leases run out.</summary>
    public async Task KillAsync()
    {
        if (_process.HasExited) return;
        _process.Kill();
        await _process.WaitForExitAsync();
    }

    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
