using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using V3electionpb;

namespace KvJournal.Server.Api.Gateway;

/// <summary>
/// etcd's HTTP/JSON gateway on the client port: POST /v3/... with a JSON body, the same paths as
/// etcd's grpc-gateway (its google.api.http annotations), each served by the shard's face, as the
/// gRPC services are, so the gateway adds no behaviour of its own. Streams answer one
/// {"result": …} line per message.
/// </summary>
public static class GatewayRoutes
{
    public static void Map(IEndpointRouteBuilder app)
    {
        // Every unary method at its gateway paths, from the table the gRPC wire binds too.
        var unary = new UnaryRoutes(app);
        foreach (var method in EtcdMethods.Unary) method.BindTo(unary);

        // A watch outlives the end of the request body, as etcd's does; the stream ends when the client goes.
        Stream(app, WatchRequest.Parser, "/v3/watch", (f, requests, who, call, ct) =>
            f.WatchAsync(Each(requests), who, requireLeader: false,
                (frame, _, _) => call.WriteStreamedAsync(WatchResponse.Parser.ParseFrom(frame.ToByteArray())), ct));
        Stream(app, LeaseKeepAliveRequest.Parser, "/v3/lease/keepalive", async (f, requests, who, call, ct) =>
        {
            foreach (var request in requests) await call.WriteStreamedAsync(await f.LeaseKeepAliveAsync(request, who, ct).ConfigureAwait(false)).ConfigureAwait(false);
        });
        Stream(app, SnapshotRequest.Parser, "/v3/maintenance/snapshot", (f, requests, who, call, ct) =>
            f.SnapshotAsync(First(requests), who, (m, _) => call.WriteStreamedAsync(m), ct));
        Stream(app, LeaderRequest.Parser, "/v3/election/observe", (f, requests, who, call, ct) =>
            f.ObserveAsync(First(requests), who, (m, _) => call.WriteStreamedAsync(m), ct));

        // Anything else under /v3/: grpc-gateway's answers.
        app.Map("/v3/{**rest}", (HttpContext http) => new GatewayCall(http).WriteErrorAsync(http.Request.Method == HttpMethods.Post
            ? new RpcException(new Status(StatusCode.NotFound, "Not Found"))
            : new RpcException(new Status(StatusCode.Unimplemented, "Method Not Allowed"))));
    }

    /// <summary>Routes each unary method's gateway paths to its face method.</summary>
    private sealed class UnaryRoutes(IEndpointRouteBuilder app) : IUnaryMethodBinder
    {
        public void Bind<TRequest, TResponse>(UnaryMethod<TRequest, TResponse> method) where TRequest : class, IMessage<TRequest>, new() where TResponse : IMessage
        {
            foreach (var path in method.GatewayPaths)
            {
                Stream(app, method.Parser, path, async (face, requests, who, call, ct) =>
                    await call.WriteUnaryAsync(await method.Serve(face, First(requests), who, ct).ConfigureAwait(false)).ConfigureAwait(false));
            }
        }
    }

    /// <summary>A route whose body holds the request messages (none, one or several), served by <paramref name="serve"/>.</summary>
    private static void Stream<TRequest>(IEndpointRouteBuilder app, MessageParser<TRequest> parser, string path,
        Func<ShardServer, List<TRequest>, CallerIdentity, GatewayCall, CancellationToken, Task> serve)
        where TRequest : IMessage<TRequest>, new()
    {
        var router = app.ServiceProvider.GetRequiredService<ShardRouter>();
        app.MapPost(path, async (HttpContext http) =>
        {
            var call = new GatewayCall(http);
            try
            {
                // --listen-metrics-urls serve /metrics and /health only, as etcd's do.
                if (OnMetricsPort(http)) throw new RpcException(new Status(StatusCode.NotFound, "Not Found"));
                var face = router.For(http);
                var requests = await call.ReadRequestsAsync(parser).ConfigureAwait(false);
                await serve(face, requests, call.Who(face), call, http.RequestAborted).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
            {
                // the client went away
            }
            catch (Exception ex)
            {
                await call.WriteErrorAsync(ex).ConfigureAwait(false);
            }
        });
    }

    // A unary body with no message is the message with every field at its default.
    private static T First<T>(List<T> requests) where T : new() => requests.Count > 0 ? requests[0] : new T();

    // The body's requests, as the stream of them a watch reads (System.Linq.Async, which FASTER
    // brings along, makes the framework's ToAsyncEnumerable ambiguous).
    private static async IAsyncEnumerable<T> Each<T>(List<T> requests)
    {
        foreach (var request in requests) yield return request;
        await Task.CompletedTask.ConfigureAwait(false);
    }

    private static bool OnMetricsPort(HttpContext http)
    {
        foreach (var url in http.RequestServices.GetRequiredService<Hosting.ServerOptions>().ListenMetricsUrls)
            if (url.Port == http.Connection.LocalPort) return true;
        return false;
    }
}
