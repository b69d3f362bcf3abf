using KvJournal.Member.Shards;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Hosting;

/// <summary>
/// Which shard a request is for: the one whose client URL (or internal HTTP/1.1 relay port) the
/// connection arrived on. Services get the request's <see cref="Shard"/> injected from it.
/// </summary>
public sealed class ShardRouter(Shard defaultShard)
{
    private readonly Dictionary<int, Shard> _byPort = [];

    public Shard Default { get; } = defaultShard;

    public void Route(int port, Shard shard) => _byPort[port] = shard;

    public Shard For(HttpContext? http) =>
        http is not null && _byPort.TryGetValue(http.Connection.LocalPort, out var shard) ? shard : Default;
}
