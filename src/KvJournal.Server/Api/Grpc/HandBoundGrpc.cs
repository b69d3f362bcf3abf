using System.Collections.Frozen;
using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Http;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;
using V3electionpb;

namespace KvJournal.Server.Api.Grpc;

/// <summary>
/// etcd's gRPC API served on Kestrel's HTTP/2 streams directly: every unary method
/// (<see cref="EtcdMethods"/>) and the streams Watch, LeaseKeepAlive, Snapshot, Observe and gRPC's health Watch. A
/// middleware ahead of routing finds the method by its path, reads the requests from the body pipe,
/// calls the shard's face and writes the answers and their status. Grpc.AspNetCore's generic
/// per-call path (a call context, an interceptor pipeline, serialization contexts and endpoint
/// routing for every call) took 14–40% of the member's CPU per call at 1,000 clients; this is the
/// only gRPC server code, so every call goes through the same steps.
/// </summary>
/// <remarks>
/// A call is counted in <see cref="GrpcMetrics"/>, refused with "etcdserver: no leader" when it
/// requires a leader (<c>hasleader</c>) while the shard cannot reach the journal, and ended with
/// etcd's status for what the face threw. Its grpc-timeout cancels the face's work and ends it with
/// DeadlineExceeded. Request messages: limits, gzip and parse errors as in grpc-go
/// (<see cref="GrpcMessages"/>); a method or service it does not serve gets grpc-go's Unimplemented.
/// </remarks>
public sealed class HandBoundGrpc
{
    /// <summary>Serves one call on the face of its shard; writes the response messages, not the status.</summary>
    public delegate Task Serve(HttpContext http, ShardServer face, CancellationToken cancellationToken);

    private readonly ShardRouter _router;
    private readonly GrpcMetrics _metrics;
    private readonly ILogger _logger;
    private readonly FrozenDictionary<string, RequestDelegate> _methods;
    private readonly FrozenSet<string> _services;

    public HandBoundGrpc(ShardRouter router, ServerOptions options, GrpcMetrics metrics, ILoggerFactory logs)
    {
        _router = router;
        _metrics = metrics;
        _logger = logs.CreateLogger("KvJournal.Grpc");
        MaxMessageBytes = options.MaxRequestBytes + ServerOptions.GrpcOverheadBytes;
        ClientCertAuth = options.ClientCertAuth;
        var methods = new Dictionary<string, RequestDelegate>(StringComparer.Ordinal);
        var unary = new UnaryBinder(this, methods);
        foreach (var method in EtcdMethods.Unary) method.BindTo(unary);
        Add(methods, "bidi_stream", "etcdserverpb.Lease", "LeaseKeepAlive", new Lease.KeepAliveCall(this).ServeAsync);
        Add(methods, "bidi_stream", "etcdserverpb.Watch", "Watch", new Watch.WatchCall(this).ServeAsync);
        AddServerStream<SnapshotRequest, SnapshotResponse>(methods, "etcdserverpb.Maintenance", "Snapshot", SnapshotRequest.Parser, static (face, r, who, send, ct) => face.SnapshotAsync(r, who, send, ct));
        AddServerStream<LeaderRequest, LeaderResponse>(methods, "v3electionpb.Election", "Observe", LeaderRequest.Parser, static (face, r, who, send, ct) => face.ObserveAsync(r, who, send, ct));
        AddServerStream<HealthCheckRequest, HealthCheckResponse>(methods, "grpc.health.v1.Health", "Watch", HealthCheckRequest.Parser, static (face, r, _, send, ct) => face.WatchHealthAsync(r, send, ct));
        _methods = methods.ToFrozenDictionary(StringComparer.Ordinal);
        _services = methods.Keys.Select(path => path[1..path.LastIndexOf('/')]).ToFrozenSet(StringComparer.Ordinal);
    }

    /// <summary>The largest request message (etcd: --max-request-bytes plus gRPC's overhead).</summary>
    public int MaxMessageBytes { get; }

    /// <summary>Whether client certificates name users (--client-cert-auth).</summary>
    public bool ClientCertAuth { get; }

    /// <summary>The middleware: a gRPC call is served here, anything else (HTTP endpoints, the JSON gateway) goes on.</summary>
    public RequestDelegate Middleware(RequestDelegate next) => http =>
    {
        if (!IsGrpc(http.Request)) return next(http);
        string path = http.Request.Path.Value ?? "";
        if (!HttpMethods.IsPost(http.Request.Method))
            return RefuseAsync(http, StatusCodes.Status405MethodNotAllowed, new Status(StatusCode.Internal, $"Received a HEADERS frame with :method \"{http.Request.Method}\" which should be POST"));
        return _methods.TryGetValue(path, out var serve) ? serve(http) : UnknownAsync(http, path);
    };

    // grpc-go's answer (etcd's) to a method it does not serve.
    private Task UnknownAsync(HttpContext http, string path)
    {
        int slash = path.LastIndexOf('/');
        if (slash <= 0) return RefuseAsync(http, StatusCodes.Status200OK, new Status(StatusCode.Unimplemented, $"malformed method name: \"{path}\""));
        string service = path[1..slash];
        return RefuseAsync(http, StatusCodes.Status200OK, new Status(StatusCode.Unimplemented, _services.Contains(service)
            ? $"unknown method {path[(slash + 1)..]} for service {service}"
            : $"unknown service {service}"));
    }

    // A call refused before any method runs (not counted in the metrics, as in grpc-go).
    private static Task RefuseAsync(HttpContext http, int httpStatus, Status status)
    {
        http.Response.StatusCode = httpStatus;
        http.Response.ContentType = "application/grpc";
        GrpcStatuses.End(http.Response, status);
        return Task.CompletedTask;
    }

    private static bool IsGrpc(HttpRequest request) =>
        request.ContentType is { } type && type.StartsWith("application/grpc", StringComparison.Ordinal) && !type.StartsWith("application/grpc-web", StringComparison.Ordinal)
        && HttpProtocol.IsHttp2(request.Protocol);

    // type: go-grpc-prometheus's grpc_type (unary, server_stream, bidi_stream).
    private void Add(Dictionary<string, RequestDelegate> methods, string type, string service, string name, Serve serve)
    {
        string path = $"/{service}/{name}";
        var counters = _metrics.For(type, path);
        bool unary = type == "unary";
        bool bidi = type == "bidi_stream";
        methods.Add(path, http =>
        {
            // A stream's client sends a few bytes now and then (a renewal every TTL/3, a watch
            // create): Kestrel's minimum request data rate, made for uploads, would close its connection.
            if (bidi && http.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rate) rate.MinDataRate = null;
            return CallAsync(http, counters, unary, serve);
        });
    }

    /// <summary>A method answering one request with a stream of responses, each flushed as it is sent.</summary>
    private void AddServerStream<TRequest, TResponse>(Dictionary<string, RequestDelegate> methods, string service, string name, MessageParser<TRequest> parser,
        Func<ShardServer, TRequest, CallerIdentity, Func<TResponse, CancellationToken, Task>, CancellationToken, Task> serve)
        where TRequest : class, IMessage<TRequest> where TResponse : IMessage =>
        Add(methods, "server_stream", service, name, async (http, face, ct) =>
        {
            var request = await ReadOnlyRequestAsync(http, parser, ct).ConfigureAwait(false);
            var body = http.Response.BodyWriter;
            await serve(face, request, CallMetadata.Who(http, face, ClientCertAuth), (response, token) =>
            {
                GrpcMessages.Write(body, response);
                return body.FlushAsync(token).AsTask();
            }, ct).ConfigureAwait(false);
        });

    // The request message of a unary call (grpc-go reads the first and ignores any more). A
    // ValueTask: the request is usually in the body pipe already, and then nothing is allocated.
    private async ValueTask<T> ReadRequestAsync<T>(HttpContext http, MessageParser<T> parser, CancellationToken cancellationToken) where T : class, IMessage<T> =>
        await GrpcMessages.ReadAsync(http.Request, parser, MaxMessageBytes, MethodType.Unary, cancellationToken).ConfigureAwait(false)
            ?? throw new RpcException(new Status(StatusCode.Unknown, "EOF"));

    // The one request message of a server-streaming call: grpc-go reads on to the end of the
    // client's side and refuses none or several before the method runs.
    private async Task<T> ReadOnlyRequestAsync<T>(HttpContext http, MessageParser<T> parser, CancellationToken cancellationToken) where T : class, IMessage<T>
    {
        var request = await GrpcMessages.ReadAsync(http.Request, parser, MaxMessageBytes, MethodType.ServerStreaming, cancellationToken).ConfigureAwait(false)
            ?? throw new RpcException(new Status(StatusCode.Internal, "cardinality violation: received no request message from non-client-streaming RPC"));
        if (await GrpcMessages.ReadAsync(http.Request, parser, MaxMessageBytes, MethodType.ServerStreaming, cancellationToken).ConfigureAwait(false) is not null)
            throw new RpcException(new Status(StatusCode.Internal, "cardinality violation: received multiple request messages for non-client-streaming RPC"));
        return request;
    }

    /// <summary>One call: counted, refused without a leader, bounded by its deadline, ended with its status.</summary>
    private async Task CallAsync(HttpContext http, GrpcMetrics.MethodCounters counters, bool unary, Serve serve)
    {
        counters.Started();
        long started = Stopwatch.GetTimestamp();
        var response = http.Response;
        response.ContentType = "application/grpc";
        using var deadline = GrpcDeadline.Start(http);
        Status status;
        try
        {
            if (GrpcMessages.UnsupportedEncoding(http.Request) is { } unsupported) throw new RpcException(unsupported);
            var face = _router.For(http);
            if (CallMetadata.RequiresLeader(http.Request) && !face.HasLeader) EtcdErrors.Throw(EtcdError.NoLeader);
            await serve(http, face, deadline?.Token ?? http.RequestAborted).ConfigureAwait(false);
            status = Status.DefaultSuccess;
        }
        catch (Exception ex)
        {
            status = StatusOf(ex, http, deadline);
        }
        // A client that reset the stream gets nothing more; its call counts as cancelled.
        if (http.RequestAborted.IsCancellationRequested) status = new Status(StatusCode.Cancelled, "");
        else GrpcStatuses.End(response, status);
        counters.Handled(status.StatusCode);
        if (unary) _metrics.UnaryLatency.Observe(Stopwatch.GetElapsedTime(started));
    }

    private Status StatusOf(Exception ex, HttpContext http, CancellationTokenSource? deadline)
    {
        if (EtcdErrors.StatusOf(ex) is { } status) return status;
        if (ex is OperationCanceledException or IOException)
        {
            if (deadline is { IsCancellationRequested: true } && !http.RequestAborted.IsCancellationRequested) return new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded");
            if (http.RequestAborted.IsCancellationRequested) return new Status(StatusCode.Cancelled, "");
        }
        if (_logger.IsEnabled(LogLevel.Error)) _logger.LogError(ex, "error serving {Method}", http.Request.Path.Value);
        return new Status(StatusCode.Unknown, "Exception was thrown by handler.");
    }

    /// <summary>Binds each unary method: its request read, the face called, its response written.</summary>
    private sealed class UnaryBinder(HandBoundGrpc grpc, Dictionary<string, RequestDelegate> methods) : IUnaryMethodBinder
    {
        public void Bind<TRequest, TResponse>(UnaryMethod<TRequest, TResponse> method) where TRequest : class, IMessage<TRequest>, new() where TResponse : IMessage =>
            grpc.Add(methods, "unary", method.Service, method.Name, async (http, face, ct) =>
            {
                var request = await grpc.ReadRequestAsync(http, method.Parser, ct).ConfigureAwait(false);
                var response = await method.Serve(face, request, CallMetadata.Who(http, face, grpc.ClientCertAuth), ct).ConfigureAwait(false);
                GrpcMessages.Write(http.Response.BodyWriter, response);
            });
    }
}
