using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace KvJournal.Testing;

/// <summary>
/// A nats-server cluster this test started on 127.0.0.1 (3 or 5 nodes, JetStream with
/// <c>sync_interval: always</c>, as README's configuration): the replicated journal's home.
/// Nodes are stopped by their PIDs (kill -9 or a graceful SIGTERM) and restarted on the same ports
/// and store directories. <see cref="Binary"/> is $NATS_SERVER, or what tools/test.sh installs.
/// </summary>
public sealed class NatsCluster : IAsyncDisposable
{
    private readonly string _dir = Paths.NewTempDir("nats");
    private readonly Node[] _nodes;
    private readonly NetworkLab? _lab;
    private readonly string _clientConfig;
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    /// <summary>One nats-server: its ports, and the process while it runs.</summary>
    public sealed class Node(int index, string host, int clientPort, int routePort, int monitorPort)
    {
        public int Index { get; } = index;
        /// <summary>The address it listens on: 127.0.0.1, or its host's in a <see cref="NetworkLab"/>.</summary>
        public string Host { get; } = host;
        public string Name => $"n{Index}";
        public int ClientPort { get; } = clientPort;
        public int RoutePort { get; } = routePort;
        public int MonitorPort { get; } = monitorPort;
        public string Url => $"nats://{Host}:{ClientPort}";
        internal Process? Process { get; set; }
        internal StringBuilder Output { get; } = new();
        public bool Running => Process is { HasExited: false };
    }

    public static string Binary => Environment.GetEnvironmentVariable("NATS_SERVER") is { Length: > 0 } path
        ? path
        : Path.Combine(Environment.GetEnvironmentVariable("NATS_HOME") is { Length: > 0 } h ? h : "/tmp/nats", "bin", "nats-server");

    private NatsCluster(int nodes, NetworkLab? lab, string clientConfig)
    {
        _lab = lab;
        _clientConfig = clientConfig;
        _nodes = [.. Enumerable.Range(1, nodes).Select(i => new Node(i, lab?.Address(i) ?? "127.0.0.1", Ports.Free(), Ports.Free(), Ports.Free()))];
    }

    public IReadOnlyList<Node> Nodes => _nodes;

    /// <summary>Every node's client URL, as a member's --journal-endpoints.</summary>
    public string Endpoints => string.Join(",", _nodes.Select(n => n.Url));

    /// <summary>
    /// Starts the nodes (on loopback, or node i on host i of <paramref name="lab"/>) and returns once
    /// each answers /healthz (JetStream ready).
    /// </summary>
    /// <param name="clientConfig">nats-server blocks for client connections (<c>authorization { ... }</c>, <c>tls { ... }</c>), or empty.</param>
    public static async Task<NatsCluster> StartAsync(int nodes = 3, NetworkLab? lab = null, string clientConfig = "")
    {
        if (!File.Exists(Binary)) throw new FileNotFoundException($"{Binary} is missing: run tools/test.sh (it installs nats-server) or set NATS_SERVER", Binary);
        for (int attempt = 1; ; attempt++)
        {
            var cluster = new NatsCluster(nodes, lab, clientConfig);
            try
            {
                foreach (var n in cluster._nodes) cluster.Start(n);
                foreach (var n in cluster._nodes) await cluster.WaitHealthyAsync(n, TimeSpan.FromSeconds(30), everyNodeStarted: true);
                return cluster;
            }
            catch (Exception) when ((attempt < 3 && cluster.Output.Contains("address already in use", StringComparison.Ordinal)) || attempt < 2)
            {
                // Starting the cluster is not what a test checks: a port from Ports.Free taken by
                // another socket before a node bound it, or a cluster that elected no meta leader
                // in time (seen once in CI), is retried on fresh ports and a fresh store.
                Console.Error.WriteLine($"NatsCluster: start attempt {attempt} failed; retrying on fresh ports:\n{cluster.Output}");
                await cluster.DisposeAsync();
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }
    }

    // Every node's output, for a failure's message.
    private string Output => string.Join("\n", _nodes.Select(n => { lock (n.Output) return $"--- {n.Name}:\n{n.Output}"; }));

    private string Config(Node n)
    {
        string routes = string.Join(", ", _nodes.Select(o => $"nats-route://{o.Host}:{o.RoutePort}"));
        string store = Path.Combine(_dir, n.Name);
        return $$"""
            server_name: {{n.Name}}
            listen: {{n.Host}}:{{n.ClientPort}}
            http: {{n.Host}}:{{n.MonitorPort}}
            max_payload: 8MB
            jetstream {
              store_dir: "{{store}}"
              sync_interval: always
            }
            cluster {
              name: kvjournal-test
              listen: {{n.Host}}:{{n.RoutePort}}
              routes: [{{routes}}]
            }
            {{_clientConfig}}
            """;
    }

    private void Start(Node n)
    {
        string config = Path.Combine(_dir, n.Name + ".conf");
        File.WriteAllText(config, Config(n));
        // In a lab, `ip netns exec` replaces itself with nats-server: the PID is the server's.
        string[] command = _lab is null ? [Binary] : [.. _lab.Exec(n.Index), Binary];
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command[1..]) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(config);
        var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (n.Output) n.Output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (n.Output) n.Output.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        n.Process = p;
    }

    /// <summary>Waits for the node's monitoring /healthz to say ok (its JetStream is current).</summary>
    /// <param name="everyNodeStarted">at start: any node that exited fails the wait (the others cannot elect without it).</param>
    public async Task WaitHealthyAsync(Node n, TimeSpan timeout, bool everyNodeStarted = false)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var gone = everyNodeStarted ? _nodes.FirstOrDefault(x => x.Process is { HasExited: true }) : n.Process is { HasExited: true } ? n : null;
            if (gone is not null) throw new InvalidOperationException($"nats-server {gone.Name} exited:\n{Output}");
            try
            {
                var r = await Http.GetAsync(new Uri($"http://{n.Host}:{n.MonitorPort}/healthz"));
                if (r.IsSuccessStatusCode) return;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"nats-server {n.Name} not healthy after {timeout}:\n{Output}");
            await Task.Delay(50);
        }
    }

    /// <summary>The node that leads the JetStream stream <paramref name="stream"/> now (from a running node's /jsz), or null.</summary>
    public Task<Node?> StreamLeaderAsync(string stream) =>
        FromStreamDetailAsync(stream, s =>
        {
            string? leader = s.GetProperty("cluster").TryGetProperty("leader", out var l) ? l.GetString() : null;
            return _nodes.FirstOrDefault(x => x.Name == leader);
        });

    /// <summary>The first and last sequence of stream <paramref name="stream"/> as a running node sees it, or null.</summary>
    public async Task<(ulong First, ulong Last)?> StreamStateAsync(string stream) =>
        await FromStreamDetailAsync<Tuple<ulong, ulong>>(stream, s =>
        {
            var state = s.GetProperty("state");
            return Tuple.Create(state.GetProperty("first_seq").GetUInt64(), state.GetProperty("last_seq").GetUInt64());
        }) is { } t ? (t.Item1, t.Item2) : null;

    // The first non-null answer of read over the stream's detail in a running node's /jsz.
    private async Task<T?> FromStreamDetailAsync<T>(string stream, Func<JsonElement, T?> read) where T : class
    {
        foreach (var n in _nodes.Where(n => n.Running))
        {
            try
            {
                using var doc = JsonDocument.Parse(await Http.GetStringAsync(new Uri($"http://{n.Host}:{n.MonitorPort}/jsz?streams=true")));
                foreach (var account in doc.RootElement.GetProperty("account_details").EnumerateArray())
                {
                    if (!account.TryGetProperty("stream_detail", out var streams)) continue;
                    foreach (var s in streams.EnumerateArray())
                        if (s.GetProperty("name").GetString() == stream && read(s) is { } found) return found;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or KeyNotFoundException or JsonException or InvalidOperationException)
            {
            }
        }
        return null;
    }

    // A test stops only the processes it started: a node of this cluster.
    private void Own(Node n)
    {
        if (!_nodes.Contains(n)) throw new ArgumentException($"node {n.Name} is not one of this cluster's", nameof(n));
    }

    /// <summary>kill -9 of one node: nothing it had not fsynced survives.</summary>
    public async Task KillAsync(Node n)
    {
        Own(n);
        if (n.Process is { HasExited: false } p)
        {
            p.Kill();
            await p.WaitForExitAsync();
        }
    }

    /// <summary>A graceful stop (SIGTERM): the node hands its leaderships over first.</summary>
    public async Task StopAsync(Node n)
    {
        Own(n);
        if (n.Process is { HasExited: false } p)
        {
            using (var term = Process.Start("kill", ["-TERM", p.Id.ToString(CultureInfo.InvariantCulture)])) await term.WaitForExitAsync();
            if (!p.WaitForExit(TimeSpan.FromSeconds(30))) p.Kill();
            await p.WaitForExitAsync();
        }
    }

    /// <summary>Starts a stopped node again on its ports and store.</summary>
    public Task RestartAsync(Node n)
    {
        if (n.Running) throw new InvalidOperationException($"{n.Name} is running");
        n.Process?.Dispose();
        Start(n);
        return WaitHealthyAsync(n, TimeSpan.FromSeconds(60));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var n in _nodes)
        {
            await KillAsync(n);
            n.Process?.Dispose();
        }
        Paths.DeleteDir(_dir);
    }
}
