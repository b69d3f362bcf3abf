using System.Diagnostics;
using System.Globalization;

namespace KvJournal.Testing;

/// <summary>
/// Test hosts in network namespaces this test creates (and removes on dispose): one namespace per
/// host, each joined by a veth pair to a bridge in the root namespace, which holds the .254
/// address of the lab's /24, so processes in the root namespace (the members) reach every host.
/// A partition is a blackhole route between hosts: the hosts stop hearing each other while the
/// root namespace still reaches each of them. Needs root (CI runs as root). Traffic stays inside
/// the lab's own namespaces.
/// </summary>
public sealed class NetworkLab : IAsyncDisposable
{
    private readonly string _id = Guid.NewGuid().ToString("N")[..6];
    private readonly int _subnet = Random.Shared.Next(10, 250);
    private readonly List<string> _namespaces = [];
    private readonly HashSet<(int From, int To)> _cut = [];

    private NetworkLab()
    {
    }

    private string Bridge => $"kvjbr{_id}";

    /// <summary>The namespace of host <paramref name="host"/> (1-based).</summary>
    public string Namespace(int host) => $"kvj{_id}n{host}";

    /// <summary>The address of host <paramref name="host"/> (1-based).</summary>
    public string Address(int host) => $"10.213.{_subnet}.{host}";

    /// <summary>Creates <paramref name="hosts"/> namespaces joined by a bridge; removes what it made if a step fails.</summary>
    public static async Task<NetworkLab> StartAsync(int hosts)
    {
        var lab = new NetworkLab();
        try
        {
            await IpAsync("link", "add", lab.Bridge, "type", "bridge");
            await IpAsync("addr", "add", $"10.213.{lab._subnet}.254/24", "dev", lab.Bridge);
            await IpAsync("link", "set", lab.Bridge, "up");
            for (int h = 1; h <= hosts; h++)
            {
                string ns = lab.Namespace(h), outside = $"kvj{lab._id}h{h}", inside = $"kvj{lab._id}v{h}";
                await IpAsync("netns", "add", ns);
                lab._namespaces.Add(ns);
                await IpAsync("link", "add", outside, "type", "veth", "peer", "name", inside);
                await IpAsync("link", "set", inside, "netns", ns);
                await IpAsync("link", "set", outside, "master", lab.Bridge);
                await IpAsync("link", "set", outside, "up");
                await IpAsync("-n", ns, "addr", "add", lab.Address(h) + "/24", "dev", inside);
                await IpAsync("-n", ns, "link", "set", inside, "up");
                await IpAsync("-n", ns, "link", "set", "lo", "up");
            }
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>Cuts <paramref name="host"/> off from every other host (both directions); the root namespace still reaches it.</summary>
    public async Task IsolateAsync(int host)
    {
        for (int other = 1; other <= _namespaces.Count; other++)
        {
            if (other == host) continue;
            await CutAsync(host, other);
            await CutAsync(other, host);
        }
    }

    /// <summary>Removes every cut.</summary>
    public async Task HealAsync()
    {
        foreach (var (from, to) in _cut.ToList())
        {
            await IpAsync("-n", Namespace(from), "route", "del", "blackhole", Address(to) + "/32");
            _cut.Remove((from, to));
        }
    }

    private async Task CutAsync(int from, int to)
    {
        if (!_cut.Add((from, to))) return;
        await IpAsync("-n", Namespace(from), "route", "add", "blackhole", Address(to) + "/32");
    }

    /// <summary>The command line that runs a program inside host <paramref name="host"/>'s namespace (ip netns exec replaces itself with it).</summary>
    public string[] Exec(int host) => ["ip", "netns", "exec", Namespace(host)];

    private static async Task IpAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({p.ExitCode.ToString(CultureInfo.InvariantCulture)}): {stderr} (network namespaces need root and iproute2)");
    }

    public async ValueTask DisposeAsync()
    {
        // Deleting one end of a veth pair deletes both; the namespace may outlive its name for a while.
        for (int h = 1; h <= _namespaces.Count; h++)
        {
            try { await IpAsync("link", "del", $"kvj{_id}h{h}"); } catch (InvalidOperationException) { }
            try { await IpAsync("netns", "del", Namespace(h)); } catch (InvalidOperationException) { }
        }
        try { await IpAsync("link", "del", Bridge); } catch (InvalidOperationException) { }
    }
}
