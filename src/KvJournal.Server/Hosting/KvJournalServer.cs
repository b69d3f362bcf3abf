using System.Net;
using KvJournal.Journal;
using KvJournal.Journal.Embedded;
using KvJournal.Journal.Nats;
using KvJournal.Member.Backups;
using KvJournal.Member.Compaction;
using KvJournal.Member.Face;
using KvJournal.Member.Mirror;
using KvJournal.Member.Shards;
using KvJournal.Server.Api.Gateway;
using KvJournal.Server.Api.Grpc;
using KvJournal.Server.Api.Http;
using KvJournal.Server.Api.Mirror;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvJournal.Server.Hosting;

/// <summary>
/// One member process: opens a journal and a shard per keyspace (the default one and each
/// --shard), then serves the etcd API on each keyspace's client URLs. Embeddable: the executable only parses flags and runs this.
/// </summary>
public sealed class KvJournalServer : IAsyncDisposable
{
    private readonly ServerOptions _options;
    /// <summary>One keyspace this process serves: its journal, state, client URLs and port splitter.</summary>
    private sealed class HostedShard(IJournal journal, Shard shard, ShardServer face, IReadOnlyList<Uri> urls)
    {
        public IJournal Journal { get; } = journal;
        public Shard Shard { get; } = shard;
        public ShardServer Face { get; } = face;
        public IReadOnlyList<Uri> Urls { get; } = urls;
        public ClientPortSplitter Splitter { get; } = new();
        public ListenOptions? Http1 { get; set; }
        public Task Compacting { get; set; } = Task.CompletedTask;
        public Task BackingUp { get; set; } = Task.CompletedTask;
    }

    private readonly List<HostedShard> _shards = [];

    /// <summary>The etcd cluster the default keyspace follows (kvjournal mirror), or null.</summary>
    public EtcdSourceOptions? Mirror { get; init; }

    private MirrorFollower? _follower;
    private EtcdSource? _source;
    private Task _following = Task.CompletedTask;
    private readonly CancellationTokenSource _stopping = new();
    private WebApplication? _app;

    // The member's own parts (shards, journal) log here from before the web host exists.
    private readonly ILoggerFactory _logs;

    public KvJournalServer(ServerOptions options)
    {
        _options = options;
        _logs = LoggerFactory.Create(logging => JsonLogs(logging, options.LogLevel));
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        string dataDir = Path.GetFullPath(_options.EffectiveDataDir);
        Directory.CreateDirectory(dataDir);
        ulong memberId = MemberIdentity.LoadOrCreate(dataDir);
        // The default keyspace keeps its journal at data-dir/journal; each further shard has its own.
        await OpenShardAsync("default", Path.Combine(dataDir, "journal"), _options.ListenClientUrls, _options.AdvertiseClientUrls, memberId, cancellationToken).ConfigureAwait(false);
        foreach (var spec in _options.Shards)
            await OpenShardAsync(spec.Name, Path.Combine(dataDir, "shards", spec.Name, "journal"), spec.Urls, spec.Urls, memberId, cancellationToken).ConfigureAwait(false);
        if (Mirror is not null)
        {
            _source = new EtcdSource(Mirror);
            _follower = new MirrorFollower(_shards[0].Face, _source, _logs.CreateLogger("KvJournal.Mirror"), TimeProvider.System);
        }
        var router = new ShardRouter(_shards[0].Face);
        foreach (var hosted in _shards)
            foreach (var url in hosted.Urls) router.Route(url.Port, hosted.Face);

        var builder = WebApplication.CreateSlimBuilder();
        JsonLogs(builder.Logging, _options.LogLevel);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            // Behind a TLS-terminating proxy (stunnel, a mesh sidecar) clients send :scheme https
            // over the plaintext hop; grpc-go (etcd) ignores the scheme, so do we.
            kestrel.AllowAlternateSchemes = true;
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 65536;
            var tls = _options.UsesTls ? ClientTls.Options(_options) : null;
            foreach (var hosted in _shards)
            {
                foreach (var url in hosted.Urls) Listen(kestrel, url, hosted.Splitter, tls);
                // HTTP/1.1 for this shard's non-gRPC requests, relayed here by its splitter.
                kestrel.Listen(IPAddress.Loopback, 0, l =>
                {
                    l.Protocols = HttpProtocols.Http1;
                    hosted.Http1 = l;
                });
            }
            foreach (var url in _options.ListenMetricsUrls) ListenHttp1(kestrel, url);
        });
        builder.Services.AddSingleton(_options);
        builder.Services.AddSingleton(router);
        builder.Services.AddSingleton<GrpcMetrics>();
        builder.Services.AddSingleton<HandBoundGrpc>();

        _app = builder.Build();
        // gRPC calls are served ahead of routing (HandBoundGrpc); routing serves HTTP/1.1 and the gateway.
        _app.Use(_app.Services.GetRequiredService<HandBoundGrpc>().Middleware);
        _app.UseRouting();
        HttpEndpoints.Map(_app);
        if (_follower is not null) MirrorEndpoint.Map(_app, _follower);
        GatewayRoutes.Map(_app);
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        // Kestrel has bound the port-0 relay listeners now (ListenOptions carry the real port).
        foreach (var hosted in _shards)
        {
            var relay = hosted.Http1!.IPEndPoint!;
            router.Route(relay.Port, hosted.Face); // before the splitter relays anything there
            hosted.Splitter.Http1Endpoint = relay;
        }
        if (_follower is { } follower) _following = Task.Run(() => follower.RunAsync(_stopping.Token), CancellationToken.None);
    }

    private async Task OpenShardAsync(string name, string journalDir, IReadOnlyList<Uri> listen, IReadOnlyList<Uri> advertise, ulong memberId, CancellationToken cancellationToken)
    {
        // Each shard is one JetStream stream (named after the shard), or an embedded FasterLog;
        // both with room for the entry framing around the largest request.
        IJournal journal = _options.UsesNats
            ? await NatsJournal.OpenAsync(_options.NatsJournalOptions(memberId), name, _logs.CreateLogger("KvJournal.Journal"), cancellationToken).ConfigureAwait(false)
            : new FasterLogJournal(journalDir, _options.MaxRequestBytes + 64 * 1024, _logs.CreateLogger("KvJournal.Journal"), _options.UnsafeAcceptJournalLoss);
        var shard = await Shard.OpenAsync(journal, new ShardOptions(memberId, _options.MaxRequestBytes, _options.WatchProgressNotifyInterval)
        {
            Name = name,
            MemberName = _options.Name,
            QuotaBytes = _options.QuotaOf(name),
            SnapshotCount = _options.SnapshotCount,
            AuthTokenTtl = _options.AuthTokenTtl,
            Logs = _logs,
            ClientUrls = [.. advertise.Select(u => u.GetLeftPart(UriPartial.Authority))],
            PeerUrls = [.. _options.AdvertisePeerUrls.Select(u => u.GetLeftPart(UriPartial.Authority))],
        }, cancellationToken).ConfigureAwait(false);
        var face = new ShardServer(shard, new ShardServerOptions(_options.MaxTxnOps, _options.MaxRequestBytes + ServerOptions.GrpcOverheadBytes, _options.EffectiveDataDir, _options.BcryptCost,
            _options.ShardWriteRates.GetValueOrDefault(name), (int)Math.Min(int.MaxValue, _options.ShardMaxInFlightWrites.GetValueOrDefault(name))));
        var hosted = new HostedShard(journal, shard, face, listen);
        if (AutoCompaction(shard) is { } compactor) hosted.Compacting = Task.Run(() => compactor.RunAsync(_stopping.Token), CancellationToken.None);
        if (_options.BackupDir is { } backupDir)
        {
            var backups = new ShardBackups(shard, new BackupOptions(backupDir, _options.BackupInterval, _options.BackupRetention), face.Backups);
            hosted.BackingUp = Task.Run(() => backups.RunAsync(_stopping.Token), CancellationToken.None);
        }
        _shards.Add(hosted);
    }

    private AutoCompactor? AutoCompaction(Shard shard)
    {
        string retention = _options.AutoCompactionRetention;
        if (retention is "0" or "") return null;
        if (_options.AutoCompactionMode == "revision")
            return AutoCompactor.Revision(shard, ServerOptions.Number("auto-compaction-retention", retention, 1, long.MaxValue));
        // etcd reads a bare number as hours in periodic mode.
        var period = long.TryParse(retention, out long hours) ? TimeSpan.FromHours(hours) : ServerOptions.Duration("auto-compaction-retention", retention);
        return AutoCompactor.Periodic(shard, period);
    }

    /// <summary>
    /// Structured (JSON) logs like etcd's at an etcd --log-level; the web stack's per-request
    /// information stays out.
    /// </summary>
    private static void JsonLogs(ILoggingBuilder logging, string etcdLevel)
    {
        var level = LogLevelOf(etcdLevel);
        logging.ClearProviders();
        logging.AddJsonConsole(o => o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ")
            .SetMinimumLevel(level)
            .AddFilter("Microsoft", l => l >= LogLevel.Warning && l >= level)
            .AddFilter("Grpc", l => l >= LogLevel.Warning && l >= level)
            // Its lines are per-request Information, which the filter above drops anyway; but while the
            // category is enabled at all, ASP.NET Core opens a log scope and an Activity for every request.
            .AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
    }

    private static LogLevel LogLevelOf(string etcdLevel) => etcdLevel switch
    {
        "debug" => LogLevel.Debug,
        "info" => LogLevel.Information,
        "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => LogLevel.Critical,
    };

    private static void ListenHttp1(KestrelServerOptions kestrel, Uri url) =>
        Bind(kestrel, url, l => l.Protocols = HttpProtocols.Http1);

    // A URL's host as Kestrel binds it: localhost (both loopbacks), one address, or every address.
    internal static void Bind(KestrelServerOptions kestrel, Uri url, Action<ListenOptions> configure)
    {
        if (url.Host is "localhost") kestrel.ListenLocalhost(url.Port, configure);
        else if (IPAddress.TryParse(url.Host, out var ip)) kestrel.Listen(ip, url.Port, configure);
        else kestrel.ListenAnyIP(url.Port, configure);
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken) =>
        _app?.WaitForShutdownAsync(cancellationToken) ?? Task.CompletedTask;

    // Cleartext URLs speak HTTP/2 with prior knowledge (h2c), as etcdctl and kube-apiserver do on
    // http:// endpoints; the splitter hands HTTP/1.1 connections to the internal listener. On
    // https:// URLs TLS's ALPN picks the protocol per connection.
    private static void Listen(KestrelServerOptions kestrel, Uri url, ClientPortSplitter splitter, HttpsConnectionAdapterOptions? tls)
    {
        void Http2(ListenOptions l)
        {
            if (url.Scheme == "https")
            {
                l.Protocols = HttpProtocols.Http1AndHttp2;
                l.UseHttps(tls!);
                l.Use(GracefulClose.Wrap);
                return;
            }
            l.Protocols = HttpProtocols.Http2;
            l.Use(splitter.Wrap);
            l.Use(GracefulClose.Wrap);
        }
        Bind(kestrel, url, Http2);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var hosted in _shards)
        {
            await hosted.Compacting.ConfigureAwait(false);
            await hosted.BackingUp.ConfigureAwait(false);
        }
        await _following.ConfigureAwait(false);
        _source?.Dispose();
        if (_app is not null) await _app.DisposeAsync().ConfigureAwait(false);
        foreach (var hosted in _shards)
        {
            await hosted.Shard.CloseAsync().ConfigureAwait(false);
            await hosted.Journal.DisposeAsync().ConfigureAwait(false);
        }
        _logs.Dispose();
    }
}
