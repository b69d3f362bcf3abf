using System.Diagnostics;
using System.Text;
using Etcdserverpb;
using Grpc.Core;
using Grpc.Net.Client;

namespace KvJournal.Testing;

/// <summary>
/// An etcd API server this test started as a child process on 127.0.0.1: a kvjournal member or
/// the reference etcd. Disposing kills it by its PID (SIGKILL) and only it.
/// </summary>
public abstract class ServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private bool _ownsDataDir;

    /// <param name="ownsDataDir">delete the data directory on dispose (a test that restarts on it keeps it).</param>
    /// <param name="tls">when set the server listens on https:// and the channel presents its client certificate.</param>
    protected ServerProcess(string fileName, IEnumerable<string> args, int port, string dataDir, bool ownsDataDir, TlsFiles? tls = null,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        Port = port;
        DataDir = dataDir;
        _ownsDataDir = ownsDataDir;
        var psi = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        Channel = GrpcChannel.ForAddress($"{(tls is null ? "http" : "https")}://127.0.0.1:{port}", new GrpcChannelOptions
        {
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
            HttpHandler = tls?.ClientHandler(),
        });
        Kv = new KV.KVClient(Channel);
    }

    public int Port { get; }
    public string DataDir { get; }
    public string Endpoint => $"127.0.0.1:{Port}";
    public GrpcChannel Channel { get; }
    public KV.KVClient Kv { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>Resident set size now (VmRSS) and at its peak (VmHWM), from /proc, in bytes.</summary>
    public (long Current, long Peak) ResidentBytes()
    {
        long current = 0, peak = 0;
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) current = Kibibytes(line) * 1024;
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kibibytes(line) * 1024;
        }
        return (current, peak);

        // "VmRSS:\t  123456 kB": a tab, then padding that disappears once the number is 8 digits long.
        static long Kibibytes(string line) => long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>CPU time (user + system) the process has used so far, from /proc/PID/stat (clock ticks of 10 ms).</summary>
    public TimeSpan CpuTime()
    {
        string stat = File.ReadAllText($"/proc/{Pid}/stat");
        // Fields after the command name (which may hold spaces, in parentheses): utime is the 14th, stime the 15th.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        long ticks = long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture);
        return TimeSpan.FromMilliseconds(ticks * 10);
    }

    public string Output
    {
        get { lock (_output) return _output.ToString(); }
    }

    private void Append(string? line)
    {
        if (line is null) return;
        TaskCompletionSource grew;
        lock (_output)
        {
            _output.AppendLine(line);
            grew = _outputGrew;
            _outputGrew = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        grew.TrySetResult();
    }

    // Completed (and replaced) by every line the server writes.
    private TaskCompletionSource _outputGrew = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Waits until the server has written <paramref name="text"/>. A log line reaches the output
    /// after what it reports could be seen on the wire (the logger writes from a thread of its
    /// own, and the output is read through a pipe), so a test awaits it rather than reading the
    /// output at once. Fails with the output after <paramref name="timeout"/> (10 s unless given).
    /// </summary>
    public async Task WaitForOutputAsync(string text, TimeSpan? timeout = null)
    {
        var within = timeout ?? TimeSpan.FromSeconds(10);
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            Task grew;
            lock (_output)
            {
                if (_output.ToString().Contains(text, StringComparison.Ordinal)) return;
                grew = _outputGrew.Task;
            }
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || await Task.WhenAny(grew, Task.Delay(left)).ConfigureAwait(false) != grew)
                throw new TimeoutException($"the server did not write \"{text}\" within {within.TotalSeconds:0} s; it wrote:\n{Output}");
        }
    }

    /// <summary>
    /// Starts a server and returns it once it serves requests; kills it if it never does. A port
    /// from <see cref="Ports.Free"/> can be taken by another socket before the server binds it, so
    /// a start that fails with "address already in use" is retried on fresh ports.
    /// </summary>
    protected static Task<T> ReadyAsync<T>(Func<T> start) where T : ServerProcess => ReadyAsync(() => Task.FromResult(start()));

    /// <summary>The same, for a start that prepares something first (a restore that names the ports).</summary>
    protected static async Task<T> ReadyAsync<T>(Func<Task<T>> start) where T : ServerProcess
    {
        for (int attempt = 1; ; attempt++)
        {
            var server = await start();
            try
            {
                await server.WaitReadyAsync(TimeSpan.FromSeconds(60));
                return server;
            }
            catch (InvalidOperationException) when (attempt < 3 && server.Output.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                await server.DisposeAsync();
            }
            catch
            {
                await server.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>Waits until the server answers a serializable Range, or fails with its output.</summary>
    private protected async Task WaitReadyAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (_process.HasExited)
            {
                _process.WaitForExit(); // until its output has been read to the end
                throw new InvalidOperationException($"server exited with {_process.ExitCode} before it was ready:\n{Output}");
            }
            try
            {
                await ProbeAsync(DateTime.UtcNow.AddSeconds(2));
                return;
            }
            catch (RpcException ex)
            {
                if (DateTime.UtcNow >= deadline) throw new TimeoutException($"server not ready after {timeout} ({ex.Status.Detail}):\n{Output}", ex);
                // not listening yet: the next attempt waits on the connect itself, not on a sleep
                await Task.Yield();
            }
        }
    }

    /// <summary>
    /// One request the server answers once it serves: a serializable Range for an etcd API server.
    /// With auth enabled the answer is a refusal, which counts as serving too.
    /// </summary>
    protected virtual async Task ProbeAsync(DateTime deadline)
    {
        try
        {
            await Kv.RangeAsync(new RangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("ready-probe"), Serializable = true }, deadline: deadline);
        }
        catch (RpcException ex) when (ex.StatusCode is StatusCode.InvalidArgument or StatusCode.PermissionDenied)
        {
        }
    }

    /// <summary>
    /// kill -9 of this server, then <paramref name="start"/> (the same server on its port and data
    /// dir, which the new process owns from then on), returned once it serves or failed after
    /// <paramref name="readyWithin"/>.
    /// </summary>
    protected async Task<T> RestartAsync<T>(Func<T> start, TimeSpan readyWithin) where T : ServerProcess
    {
        await KillAsync();
        bool owned = _ownsDataDir;
        _ownsDataDir = false;
        var restarted = start();
        restarted._ownsDataDir = owned;
        return await ServingAsync(restarted, readyWithin);
    }

    /// <summary><paramref name="server"/> once it serves; killed and released if it does not within <paramref name="within"/>.</summary>
    private protected static async Task<T> ServingAsync<T>(T server, TimeSpan within) where T : ServerProcess
    {
        try
        {
            await server.WaitReadyAsync(within);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>kill -9: no shutdown hook runs, nothing is flushed beyond what was already durable.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: false);
            await _process.WaitForExitAsync();
        }
    }

    private bool _disposed;

    /// <summary>Kills the process and releases it; a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await KillAsync();
        Channel.Dispose();
        _process.Dispose();
        if (_ownsDataDir) Paths.DeleteDir(DataDir);
        GC.SuppressFinalize(this);
    }
}

/// <summary>A kvjournal member, started from the build output next to the tests.</summary>
public sealed class KvJournalProcess : ServerProcess
{
    // The same member again (RestartAsync): its command, flags, TLS files and environment.
    private readonly Func<int, string, KvJournalProcess> _again;

    private KvJournalProcess(int port, string dataDir, bool ownsDataDir, IEnumerable<string> extraArgs, TlsFiles? tls = null,
        IReadOnlyDictionary<string, string>? environment = null, IEnumerable<string>? command = null)
        : base(Paths.ServerProgram, Paths.ServerArgs([.. command ?? [], .. Args(port, dataDir, extraArgs, tls)]), port, dataDir, ownsDataDir, tls, environment)
    {
        string[] flags = [.. extraArgs];
        _again = (p, d) => new KvJournalProcess(p, d, ownsDataDir: false, flags, tls, environment, command);
    }

    /// <summary>kill -9, then the member again with the same command, flags, port and data (see <see cref="ServerProcess.RestartAsync{T}"/>).</summary>
    public Task<KvJournalProcess> RestartAsync(TimeSpan readyWithin) => RestartAsync(() => _again(Port, DataDir), readyWithin);

    /// <summary>
    /// Starts `kvjournal mirror --from <paramref name="source"/>`: a member mirroring that etcd. With
    /// no <paramref name="dataDir"/> it gets a temporary one; reusing a caller's means a restart.
    /// </summary>
    public static Task<KvJournalProcess> StartMirrorAsync(string source, string? dataDir = null, params string[] extraArgs) =>
        ReadyAsync(() => new KvJournalProcess(Ports.Free(), dataDir ?? Paths.NewTempDir("kvj-mirror"), dataDir is null, extraArgs, command: ["mirror", "--from", source]));

    /// <summary>
    /// A member that mirrored an etcd with some history (puts, a delete, a lease, a compaction) and
    /// cut over from it: the keyspace a cluster has right after moving from etcd. The etcd is gone
    /// when this returns; the member owns a temporary data dir.
    /// </summary>
    public static async Task<KvJournalProcess> StartCutOverFromEtcdAsync()
    {
        await using var etcd = await ReferenceEtcdProcess.StartAsync();
        var lease = await new Lease.LeaseClient(etcd.Channel).LeaseGrantAsync(new LeaseGrantRequest { TTL = 600 });
        for (int i = 0; i < 30; i++)
            await etcd.Kv.PutAsync(new PutRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8($"/moved/{i % 7}"), Value = Google.Protobuf.ByteString.CopyFromUtf8($"v{i}"), Lease = i % 3 == 0 ? lease.ID : 0 });
        await etcd.Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = Google.Protobuf.ByteString.CopyFromUtf8("/moved/0") });
        var head = await etcd.Kv.CompactAsync(new CompactionRequest { Revision = 20 });
        var mirror = await StartMirrorAsync(etcd.Endpoint);
        var (status, text) = await mirror.CutOverAsync(head.Header.Revision);
        if (status != 200)
        {
            await mirror.DisposeAsync();
            throw new InvalidOperationException($"cut-over failed ({status}): {text}");
        }
        return mirror;
    }

    /// <summary>Asks this mirror to cut over at <paramref name="revision"/>: the HTTP status and the answer's text.</summary>
    public async Task<(int Status, string Text)> CutOverAsync(long revision, string? token = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(90) };
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{Port}/mirror/cut-over?revision={revision}");
        if (token is not null) request.Headers.TryAddWithoutValidation("Authorization", token);
        using var response = await http.SendAsync(request);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Starts a member with extra environment variables (e.g. ETCD_* settings).</summary>
    public static Task<KvJournalProcess> StartWithEnvironmentAsync(IReadOnlyDictionary<string, string> environment, params string[] extraArgs) =>
        ReadyAsync(() => new KvJournalProcess(Ports.Free(), Paths.NewTempDir("kvj"), true, extraArgs, null, environment));

    private static IEnumerable<string> Args(int port, string dataDir, IEnumerable<string> extraArgs, TlsFiles? tls)
    {
        string url = $"{(tls is null ? "http" : "https")}://127.0.0.1:{port}";
        var args = new List<string> { "--name", "kvj-test", "--data-dir", dataDir, "--listen-client-urls", url, "--advertise-client-urls", url };
        if (tls is not null)
            args.AddRange(["--cert-file", tls.ServerCert, "--key-file", tls.ServerKey, "--trusted-ca-file", tls.CaCert, "--client-cert-auth"]);
        return args.Concat(extraArgs);
    }

    /// <summary>
    /// Runs the kvjournal executable with <paramref name="args"/> as they are (no defaults added)
    /// and returns its exit code and output once it exits; fails if it is still running after
    /// <paramref name="timeout"/> (a start that hangs), killing it.
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunToExitAsync(TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(Paths.ServerProgram) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in Paths.ServerArgs(args)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        try
        {
            await p.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            p.Kill();
            throw new TimeoutException($"kvjournal {string.Join(' ', args)} still running after {timeout}");
        }
        return (p.ExitCode, await stdout + await stderr);
    }

    /// <summary>The arguments a test member runs with: its name, data dir and client URL on 127.0.0.1.</summary>
    public static string[] MemberArgs(int port, string dataDir, params string[] extraArgs) => [.. Args(port, dataDir, extraArgs, null)];

    /// <summary>Starts a member on https:// with mTLS: the server and client certificates of <paramref name="tls"/>.</summary>
    public static Task<KvJournalProcess> StartWithTlsAsync(TlsFiles tls) =>
        ReadyAsync(() => new KvJournalProcess(Ports.Free(), Paths.NewTempDir("kvj-tls"), true, [], tls));

    /// <summary>Starts a member on <paramref name="port"/> (a restart that clients find at the same URL), on <paramref name="dataDir"/>, kept on dispose.</summary>
    public static Task<KvJournalProcess> StartOnPortAsync(int port, string dataDir) =>
        ServingAsync(new KvJournalProcess(port, dataDir, ownsDataDir: false, []), TimeSpan.FromSeconds(60));

    /// <summary>
    /// Starts a member on a fresh port. With no <paramref name="dataDir"/> it gets a temporary one,
    /// deleted on dispose; a caller's directory is kept, and reusing it means a restart.
    /// </summary>
    public static Task<KvJournalProcess> StartAsync(string? dataDir = null, params string[] extraArgs) =>
        ReadyAsync(() => new KvJournalProcess(Ports.Free(), dataDir ?? Paths.NewTempDir("kvj"), dataDir is null, extraArgs));
}

/// <summary>The reference etcd (Debian's package), single member; fsync off unless asked (tests compare answers only).</summary>
public sealed class ReferenceEtcdProcess : ServerProcess
{
    private readonly int _peerPort;
    private readonly bool _fsync;
    private readonly string[] _extraArgs;

    private ReferenceEtcdProcess(int port, int peerPort, string dataDir, bool fsync, IEnumerable<string> extraArgs, string? initialCluster = null)
        : base(Paths.Etcd, Args(port, peerPort, dataDir, fsync, initialCluster).Concat(extraArgs), port, dataDir, ownsDataDir: true)
    {
        (_peerPort, _fsync, _extraArgs) = (peerPort, fsync, [.. extraArgs]);
    }

    /// <summary>kill -9, then this single-member etcd again with the same flags, ports and data (see <see cref="ServerProcess.RestartAsync{T}"/>).</summary>
    public Task<ReferenceEtcdProcess> RestartAsync(TimeSpan readyWithin) =>
        RestartAsync(() => new ReferenceEtcdProcess(Port, _peerPort, DataDir, _fsync, _extraArgs), readyWithin);

    // A single-member cluster unless initialCluster names the others.
    private static IEnumerable<string> Args(int port, int peerPort, string dataDir, bool fsync, string? initialCluster)
    {
        string name = $"etcdref-{port}";
        string peer = $"http://127.0.0.1:{peerPort}";
        string client = $"http://127.0.0.1:{port}";
        return ["--name", name, "--data-dir", dataDir, "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", initialCluster ?? $"{name}={peer}",
            "--initial-cluster-state", "new", "--log-level", "error", .. (fsync ? Array.Empty<string>() : ["--unsafe-no-fsync"])];
    }

    /// <summary>Starts etcd; <paramref name="extraArgs"/> are etcd 3.5 flags (e.g. --experimental-watch-progress-notify-interval).</summary>
    public static Task<ReferenceEtcdProcess> StartAsync(params string[] extraArgs) => StartAsync(fsync: false, extraArgs);

    /// <summary>With <paramref name="fsync"/> etcd runs as in production (benchmarks); tests skip the flushes.</summary>
    public static Task<ReferenceEtcdProcess> StartAsync(bool fsync, params string[] extraArgs) =>
        ReadyAsync(() => new ReferenceEtcdProcess(Ports.Free(), Ports.Free(), Paths.NewTempDir("etcdref"), fsync, extraArgs));

    /// <summary>
    /// etcd started on a data dir that `etcdutl snapshot restore` made from <paramref name="snapshot"/>
    /// (a file `etcdctl snapshot save` wrote, from etcd or from KvJournal), as an operator moving to
    /// etcd would. The restore names this member and its peer URL, so each attempt restores afresh.
    /// </summary>
    public static Task<ReferenceEtcdProcess> StartRestoredAsync(string snapshot) => ReadyAsync(async () =>
    {
        int port = Ports.Free(), peerPort = Ports.Free();
        string dataDir = Paths.NewTempDir("etcdref-restored");
        Directory.Delete(dataDir); // etcdutl refuses a data dir that exists
        string name = $"etcdref-{port}", peer = $"http://127.0.0.1:{peerPort}";
        var restored = await Etcdutl.RunAsync("snapshot", "restore", snapshot, "--data-dir", dataDir, "--name", name,
            "--initial-cluster", $"{name}={peer}", "--initial-advertise-peer-urls", peer);
        if (restored.ExitCode != 0) throw new InvalidOperationException($"etcdutl snapshot restore failed:\n{restored.Stdout}\n{restored.Stderr}");
        return new ReferenceEtcdProcess(port, peerPort, dataDir, fsync: false, []);
    });

    /// <summary>
    /// A cluster of <paramref name="members"/> etcd members on loopback (etcd's own Raft), each
    /// returned once it serves; with <paramref name="fsync"/> as in production.
    /// </summary>
    public static async Task<IReadOnlyList<ReferenceEtcdProcess>> StartClusterAsync(int members, bool fsync)
    {
        var ports = Enumerable.Range(0, members).Select(_ => (Client: Ports.Free(), Peer: Ports.Free())).ToArray();
        string cluster = string.Join(",", ports.Select(p => $"etcdref-{p.Client}=http://127.0.0.1:{p.Peer}"));
        var started = ports.Select(p => new ReferenceEtcdProcess(p.Client, p.Peer, Paths.NewTempDir("etcdref"), fsync, [], cluster)).ToList();
        try
        {
            // Together: none serves before a majority of them runs.
            await Task.WhenAll(started.Select(s => s.WaitReadyAsync(TimeSpan.FromSeconds(60))));
            return started;
        }
        catch
        {
            foreach (var s in started) await s.DisposeAsync();
            throw;
        }
    }
}
