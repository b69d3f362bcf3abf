using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KvJournal.Member.Mirror;
using KvJournal.Server.Hosting;
using KvJournal.Server.Probe;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace KvJournal.Server.Commands;

/// <summary>
/// `kvjournal probe`: an availability probe of a cluster's endpoints and shards, as the SLA a
/// user holds it to is measured (every second a canary write, a linearizable read of it, and its
/// delivery on a watch, each within a latency bound; minutes available when enough probes
/// succeeded), with JSON lines files and Prometheus gauges; `kvjournal probe report` rolls the
/// minutes up into daily and monthly tables against SLA thresholds and draws a day as SVG.
/// </summary>
public static class ProbeCommand
{
    public const string Usage = """
        Usage:
          kvjournal probe --endpoints [NAME=]URL,... --dir DIR [--interval 1s] [--latency-bound 1s] [--minute-share 0.9]
                          [--user NAME:PASSWORD] [--cacert FILE] [--listen-metrics-urls http://HOST:PORT] [--duration D]
              probes each endpoint (a member's or a shard's client URL) every interval until stopped (or for D);
              writes DIR/probes-DAY.jsonl and DIR/minutes-DAY.jsonl and serves /metrics
          kvjournal probe report --dir DIR [--sla 99.99,99.9] [--svg FILE [--day YYYY-MM-DD] [--target NAME]]
              daily and monthly availability against the SLA thresholds, the breaching minutes, and a day's chart
        """;

    private static readonly string[] ProbeFlags = ["endpoints", "dir", "interval", "latency-bound", "minute-share", "user", "cacert", "listen-metrics-urls", "duration"];
    private static readonly string[] ReportFlags = ["dir", "sla", "svg", "day", "target"];

    public static Task<int> RunAsync(string[] args)
    {
        bool report = args.Length > 0 && args[0] == "report";
        var flags = Flags(report ? args[1..] : args, report ? ReportFlags : ProbeFlags, out string? problem);
        if (problem is not null) return Task.FromResult(Fail($"{problem}\n{Usage}"));
        return report ? Task.FromResult(Report(flags!)) : ProbeAsync(flags!);
    }

    private static async Task<int> ProbeAsync(Dictionary<string, string> flags)
    {
        if (!flags.TryGetValue("endpoints", out string? endpoints) || !flags.TryGetValue("dir", out string? dir)) return Fail($"probe needs --endpoints and --dir\n{Usage}");
        TimeSpan interval, bound;
        double share;
        List<ProbeTarget> targets;
        try
        {
            interval = ServerOptions.Duration("interval", flags.GetValueOrDefault("interval", "1s"));
            bound = ServerOptions.Duration("latency-bound", flags.GetValueOrDefault("latency-bound", "1s"));
            share = double.Parse(flags.GetValueOrDefault("minute-share", "0.9"), CultureInfo.InvariantCulture);
            targets = [.. endpoints.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Target)];
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or UriFormatException)
        {
            return Fail($"{ex.Message}\n{Usage}");
        }
        string? user = null, password = null;
        if (flags.TryGetValue("user", out string? u)) (user, password) = EtcdSourceOptions.ParseUser(u);

        using var stopping = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stopping.Cancel(); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stopping.Cancel(); });
        if (flags.TryGetValue("duration", out string? duration)) stopping.CancelAfter(ServerOptions.Duration("duration", duration));

        Directory.CreateDirectory(dir);
        var time = TimeProvider.System;
        var ledger = new MinuteLedger(dir, share);
        ledger.LoadExisting();
        var probers = targets.Select(t => new TargetProber(t, new EtcdSourceOptions(t.Endpoint, user, password, flags.GetValueOrDefault("cacert")), bound, time)).ToList();
        var gauges = new ProbeGauges(ledger, time);
        WebApplication? metrics = flags.TryGetValue("listen-metrics-urls", out string? metricsUrl) ? await ServeMetricsAsync(new Uri(metricsUrl), gauges).ConfigureAwait(false) : null;
        Console.Error.WriteLine($"kvjournal: probing {string.Join(", ", targets.Select(t => $"{t.Name} ({t.Endpoint})"))} every {interval.TotalSeconds:0.###} s; results in {Path.GetFullPath(dir)}");
        var files = new Lock();
        try
        {
            await Task.WhenAll(probers.Select(p => Task.Run(async () =>
            {
                using var timer = new PeriodicTimer(interval, time);
                try
                {
                    do
                    {
                        var result = await p.ProbeAsync(stopping.Token).ConfigureAwait(false);
                        if (stopping.IsCancellationRequested) break;
                        lock (files) File.AppendAllText(ProbeFiles.Probes(dir, result.At), ProbeFiles.ProbeJson(result) + "\n");
                        ledger.Add(result);
                        gauges.Record(result);
                    }
                    while (await timer.WaitForNextTickAsync(stopping.Token).ConfigureAwait(false));
                }
                catch (OperationCanceledException) when (stopping.IsCancellationRequested) { }
            }))).ConfigureAwait(false);
        }
        finally
        {
            ledger.CloseAll();
            foreach (var p in probers) p.Dispose();
            if (metrics is not null) await metrics.DisposeAsync().ConfigureAwait(false);
        }
        Console.Error.WriteLine("kvjournal: probe stopped");
        return 0;
    }

    // [NAME=]URL; a bare host:port is http://, as etcdctl takes it; the name defaults to host:port.
    private static ProbeTarget Target(string spec)
    {
        int eq = spec.IndexOf('=', StringComparison.Ordinal);
        string url = eq < 0 ? spec : spec[(eq + 1)..];
        var uri = EtcdSourceOptions.ParseEndpoint(url) ?? throw new ArgumentException($"--endpoints {url}: give a client URL, http://, https:// or host:port");
        return new ProbeTarget(eq < 0 ? uri.Authority : spec[..eq], uri);
    }

    private static async Task<WebApplication> ServeMetricsAsync(Uri url, ProbeGauges gauges)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => KvJournalServer.Bind(k, url, l => l.Protocols = HttpProtocols.Http1));
        var app = builder.Build();
        app.MapGet("/metrics", (HttpContext http) =>
        {
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return http.Response.WriteAsync(gauges.Text());
        });
        await app.StartAsync().ConfigureAwait(false);
        return app;
    }

    private static int Report(Dictionary<string, string> flags)
    {
        if (!flags.TryGetValue("dir", out string? dir) || !Directory.Exists(dir)) return Fail($"probe report needs --dir, a probe's results directory\n{Usage}");
        var slas = flags.GetValueOrDefault("sla", "99.99,99.9").Split(',').Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToList();
        var minutes = ProbeFiles.ReadMinutes(dir);
        if (minutes.Count == 0) return Fail($"no closed minutes in {dir} yet");
        Console.Out.Write(ProbeReport.Tables(minutes, slas));
        if (flags.TryGetValue("svg", out string? svg))
        {
            var day = flags.TryGetValue("day", out string? d) ? DateOnly.ParseExact(d, "yyyy-MM-dd", CultureInfo.InvariantCulture) : DateOnly.FromDateTime(minutes[^1].Minute.UtcDateTime);
            string target = flags.GetValueOrDefault("target", minutes[^1].Target);
            File.WriteAllText(svg, ProbeReport.Svg(minutes, day, target), Encoding.UTF8);
            Console.Out.WriteLine($"chart of {target} on {day:yyyy-MM-dd} written to {svg}");
        }
        return 0;
    }

    // --name value or --name=value, each one of the known flags.
    private static Dictionary<string, string>? Flags(string[] args, string[] known, out string? problem)
    {
        var flags = new Dictionary<string, string>();
        problem = null;
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
            {
                problem = $"unexpected argument {args[i]}";
                return null;
            }
            string name = args[i][2..];
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            string? value = eq >= 0 ? name[(eq + 1)..] : i + 1 < args.Length ? args[++i] : null;
            if (eq >= 0) name = name[..eq];
            if (!known.Contains(name)) problem = $"unknown flag --{name}";
            else if (value is null) problem = $"--{name} needs a value";
            if (problem is not null) return null;
            flags[name] = value!;
        }
        return flags;
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine($"kvjournal: {message}");
        return 2;
    }
}
