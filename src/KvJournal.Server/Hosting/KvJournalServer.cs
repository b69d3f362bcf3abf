using System.Net;
using KvJournal.Journal;
using KvJournal.Journal.Embedded;
using KvJournal.Member.Shards;
using KvJournal.Server.Api.Cluster;
using KvJournal.Server.Api.Kv;
using KvJournal.Server.Api.Lease;
using KvJournal.Server.Api.Maintenance;
using KvJournal.Server.Api.Unimplemented;
using KvJournal.Server.Api.Watch;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
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

    public KvJournalServer(ServerOptions options) => _options = options;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        string dataDir = Path.GetFullPath(_options.EffectiveDataDir);
        Directory.CreateDirectory(dataDir);
        ulong memberId = MemberIdentity.LoadOrCreate(dataDir);
        // Room for the journal entry framing around the largest request.
        _journal = new FasterLogJournal(Path.Combine(dataDir, "journal"), _options.MaxRequestBytes + 64 * 1024);
        _shard = await Shard.OpenAsync(_journal, new ShardOptions(memberId, _options.MaxRequestBytes, _options.WatchProgressNotifyInterval), cancellationToken).ConfigureAwait(false);

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.Http2.MaxStreamsPerConnection = 65536;
            foreach (var url in _options.ListenClientUrls) Listen(kestrel, url);
        });
        builder.Services.AddSingleton(_options);
        builder.Services.AddSingleton(_shard);
        builder.Services.AddGrpc(o =>
        {
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
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken) =>
        _app?.WaitForShutdownAsync(cancellationToken) ?? Task.CompletedTask;

    // Cleartext URLs speak HTTP/2 with prior knowledge (h2c), as etcdctl and kube-apiserver do on http:// endpoints.
    private static void Listen(KestrelServerOptions kestrel, Uri url)
    {
        void Http2(ListenOptions l) => l.Protocols = HttpProtocols.Http2;
        if (url.Host is "localhost") kestrel.ListenLocalhost(url.Port, Http2);
        else if (IPAddress.TryParse(url.Host, out var ip)) kestrel.Listen(ip, url.Port, Http2);
        else kestrel.ListenAnyIP(url.Port, Http2);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync().ConfigureAwait(false);
        if (_shard is not null) await _shard.DisposeAsync().ConfigureAwait(false);
        if (_journal is not null) await _journal.DisposeAsync().ConfigureAwait(false);
    }
}
