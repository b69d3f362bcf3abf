using System.Net;
using KvJournal.Journal;
using KvJournal.Journal.Embedded;
using KvJournal.Member.Compaction;
using KvJournal.Member.Shards;
using KvJournal.Server.Api.Cluster;
using KvJournal.Server.Api.Http;
using KvJournal.Server.Api.Kv;
using KvJournal.Server.Api.Lease;
using KvJournal.Server.Api.Maintenance;
using KvJournal.Server.Api.Unimplemented;
using KvJournal.Server.Api.Watch;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KvJournal.Server.Hosting;

/// <summary>
/// One member process: opens the journal and the shard, then serves the etcd API on the client
/// URLs. Embeddable: the executable only parses flags and runs this.
/// </summary>
public sealed class KvJournalServer : IAsyncDisposable
{
    private readonly ServerOptions _options;
    private IJournal? _journal;
    private Shard? _shard;
    private WebApplication? _app;
    private readonly ClientPortSplitter _splitter = new();
    private readonly CancellationTokenSource _stopping = new();
    private Task _compacting = Task.CompletedTask;

    public KvJournalServer(ServerOptions options) => _options = options;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        string dataDir = Path.GetFullPath(_options.EffectiveDataDir);
        Directory.CreateDirectory(dataDir);
        ulong memberId = MemberIdentity.LoadOrCreate(dataDir);
        // Room for the journal entry framing around the largest request.
        _journal = new FasterLogJournal(Path.Combine(dataDir, "journal"), _options.MaxRequestBytes + 64 * 1024);
        _shard = await Shard.OpenAsync(_journal, new ShardOptions(memberId, _options.MaxRequestBytes, _options.WatchProgressNotifyInterval)
        {
            MemberName = _options.Name,
            QuotaBytes = _options.EffectiveQuotaBytes,
            ClientUrls = [.. _options.AdvertiseClientUrls.Select(u => u.GetLeftPart(UriPartial.Authority))],
        }, cancellationToken).ConfigureAwait(false);

        if (AutoCompaction(_shard) is { } compactor) _compacting = Task.Run(() => compactor.RunAsync(_stopping.Token), CancellationToken.None);

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        // Structured (JSON) logs like etcd's; the web stack's per-request information stays out.
        builder.Logging.AddJsonConsole(o => o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ")
            .SetMinimumLevel(LogLevelOf(_options.LogLevel))
            .AddFilter("Microsoft", level => level >= LogLevel.Warning && level >= LogLevelOf(_options.LogLevel))
            .AddFilter("Grpc", level => level >= LogLevel.Warning && level >= LogLevelOf(_options.LogLevel));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 65536;
            var tls = _options.UsesTls ? ClientTls.Options(_options) : null;
            foreach (var url in _options.ListenClientUrls) Listen(kestrel, url, _splitter, tls);
            foreach (var url in _options.ListenMetricsUrls) ListenHttp1(kestrel, url);
            // HTTP/1.1 for the client ports' non-gRPC requests, relayed here by the splitter.
            kestrel.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http1);
        });
        builder.Services.AddSingleton(_options);
        builder.Services.AddSingleton(_shard);
        builder.Services.AddSingleton<GrpcMetrics>();
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<GrpcMetricsInterceptor>();
            // Above the request limit, so an oversized request reaches our own check and gets
            // etcd's "request is too large".
            o.MaxReceiveMessageSize = _options.MaxRequestBytes + ServerOptions.GrpcOverheadBytes;
            o.MaxSendMessageSize = null;
        });

        _app = builder.Build();
        _app.MapGrpcService<KvService>();
        _app.MapGrpcService<WatchService>();
        _app.MapGrpcService<LeaseService>();
        _app.MapGrpcService<ClusterService>();
        _app.MapGrpcService<MaintenanceService>();
        _app.MapGrpcService<AuthService>();
        HttpEndpoints.Map(_app);
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        _splitter.Http1Endpoint = InternalHttp1Endpoint();
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

    private static LogLevel LogLevelOf(string etcdLevel) => etcdLevel switch
    {
        "debug" => LogLevel.Debug,
        "info" => LogLevel.Information,
        "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => LogLevel.Critical,
    };

    private static void ListenHttp1(KestrelServerOptions kestrel, Uri url)
    {
        void Http1(ListenOptions l) => l.Protocols = HttpProtocols.Http1;
        if (url.Host is "localhost") kestrel.ListenLocalhost(url.Port, Http1);
        else if (IPAddress.TryParse(url.Host, out var ip)) kestrel.Listen(ip, url.Port, Http1);
        else kestrel.ListenAnyIP(url.Port, Http1);
    }

    // The loopback HTTP/1.1 listener was bound to port 0: find the port the OS gave it.
    private IPEndPoint InternalHttp1Endpoint()
    {
        var clientPorts = _options.ListenClientUrls.Concat(_options.ListenMetricsUrls).Select(u => u.Port).ToHashSet();
        var addresses = _app!.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        foreach (var address in addresses)
        {
            var uri = new Uri(address);
            if (uri.Host == "127.0.0.1" && !clientPorts.Contains(uri.Port)) return new IPEndPoint(IPAddress.Loopback, uri.Port);
        }
        throw new InvalidOperationException("the internal HTTP/1.1 listener has no address: " + string.Join(", ", addresses));
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
                return;
            }
            l.Protocols = HttpProtocols.Http2;
            l.Use(splitter.Wrap);
        }
        if (url.Host is "localhost") kestrel.ListenLocalhost(url.Port, Http2);
        else if (IPAddress.TryParse(url.Host, out var ip)) kestrel.Listen(ip, url.Port, Http2);
        else kestrel.ListenAnyIP(url.Port, Http2);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _compacting.ConfigureAwait(false);
        if (_app is not null) await _app.DisposeAsync().ConfigureAwait(false);
        if (_shard is not null) await _shard.DisposeAsync().ConfigureAwait(false);
        if (_journal is not null) await _journal.DisposeAsync().ConfigureAwait(false);
    }
}
