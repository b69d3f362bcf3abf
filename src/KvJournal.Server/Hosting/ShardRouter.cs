using System.Collections.Concurrent;
using KvJournal.Member.Face;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Hosting;

/// <summary>
/// Which shard a request is for: the one whose client URL (or internal HTTP/1.1 relay port) the
/// connection arrived on. Services and endpoints ask it for the request's <see cref="ShardServer"/> (the shard's face).
/// Client ports are routed before the server starts listening, so no request on a shard's port is
/// ever served by another shard; relay ports are routed before their splitter relays anything.
/// </summary>
public sealed class ShardRouter(ShardServer defaultShard)
{
    // Read by every request while relay ports are still being added.
    private readonly ConcurrentDictionary<int, ShardServer> _byPort = [];

    public ShardServer Default { get; } = defaultShard;

    public void Route(int port, ShardServer shard) => _byPort[port] = shard;

    public ShardServer For(HttpContext? http) =>
        http is not null && _byPort.TryGetValue(http.Connection.LocalPort, out var shard) ? shard : Default;
}
