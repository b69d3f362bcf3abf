using KvJournal.Journal.Service;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace KvJournal.Server.Hosting;

/// <summary>The journal server's settings (`kvjournal journal ...`), in the same flag syntax as the member's.</summary>
public sealed record JournalServerOptions
{
    public IReadOnlyList<Uri> ListenUrls { get; init; } = [new("http://127.0.0.1:2390")];
    public string DataDir { get; init; } = "journal.data";
    /// <summary>Largest entry accepted; members' entries are at most --max-request-bytes plus framing.</summary>
    public int MaxEntryBytes { get; init; } = 1536 * 1024 + 64 * 1024;
    public string LogLevel { get; init; } = "info";

    public const string Usage = """
        Usage: kvjournal journal [flags]

        Starts a KvJournal journal server: the durable, ordered log several members share
        (members point at it with --journal-endpoints). One stream per shard; snapshots beside them.

          --listen-urls URLS         comma-separated http:// URLs to serve members on (default "http://127.0.0.1:2390")
          --data-dir DIR             where the streams and snapshots live (default "journal.data")
          --max-entry-bytes N        largest entry accepted (default 1638400)
          --log-level LEVEL          debug, info, warn or error (default info)
          --help                     show this help
        """;

    private static readonly HashSet<string> Names = ["listen-urls", "data-dir", "max-entry-bytes", "log-level"];

    public static JournalServerOptions Parse(IReadOnlyList<string> args)
    {
        var o = new JournalServerOptions();
        foreach (var (name, value) in ServerOptions.ReadFlags(args, Names, new HashSet<string>()))
        {
            o = name switch
            {
                "listen-urls" => o with { ListenUrls = ServerOptions.Urls(name, value) },
                "data-dir" => o with { DataDir = value },
                "max-entry-bytes" => o with { MaxEntryBytes = (int)ServerOptions.Number(name, value, 1024, 256L * 1024 * 1024) },
                "log-level" => o with { LogLevel = value is "debug" or "info" or "warn" or "error" ? value : throw new ArgumentException($"invalid value \"{value}\" for flag --{name}: want debug, info, warn or error") },
                _ => throw new ArgumentException($"unknown flag: --{name}"),
            };
        }
        if (o.ListenUrls.Any(u => u.Scheme != "http")) throw new ArgumentException("--listen-urls takes http:// URLs");
        return o;
    }
}

/// <summary>
/// The journal server process: the journal service over HTTP/2 (h2c) on its listen URLs, its
/// streams under the data directory.
/// </summary>
public static class JournalServerHost
{
    public static async Task<int> RunAsync(IReadOnlyList<string> args)
    {
        if (args.Any(a => a is "--help" or "-h" or "-help"))
        {
            Console.Out.WriteLine(JournalServerOptions.Usage);
            return 0;
        }
        JournalServerOptions options;
        try
        {
            options = JournalServerOptions.Parse(args);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"kvjournal journal: {ex.Message}");
            Console.Error.WriteLine("Run 'kvjournal journal --help' for the supported flags.");
            return 2;
        }

        string dataDir = Path.GetFullPath(options.DataDir);
        await using var streams = new JournalStreams(dataDir, options.MaxEntryBytes);
        streams.OpenExisting();
        var builder = WebApplication.CreateSlimBuilder();
        KvJournalServer.JsonLogs(builder.Logging, options.LogLevel);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 4096;
            // Room for a full read batch and a full append batch in one HTTP/2 window.
            kestrel.Limits.Http2.InitialConnectionWindowSize = 16 << 20;
            kestrel.Limits.Http2.InitialStreamWindowSize = 8 << 20;
            foreach (var url in options.ListenUrls) KvJournalServer.Bind(kestrel, url, l => l.Protocols = HttpProtocols.Http2);
        });
        builder.Services.AddSingleton(streams);
        builder.Services.AddGrpc(o =>
        {
            o.MaxReceiveMessageSize = null;
            o.MaxSendMessageSize = null;
        });
        await using var app = builder.Build();
        app.MapGrpcService<JournalService>();
        await app.StartAsync().ConfigureAwait(false);
        Console.Error.WriteLine($"kvjournal journal: ready to serve members on {string.Join(",", options.ListenUrls)} (data dir {dataDir})");
        await app.WaitForShutdownAsync().ConfigureAwait(false);
        Console.Error.WriteLine("kvjournal journal: stopped");
        return 0;
    }
}
