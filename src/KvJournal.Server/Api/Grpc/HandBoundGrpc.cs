using System.Collections.Frozen;
using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Api.Http;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace KvJournal.Server.Api.Grpc;

/// <summary>
/// etcd's unary methods (<see cref="EtcdMethods"/>) and LeaseKeepAlive served over gRPC without
/// Grpc.AspNetCore's generic per-call path (a call context, an interceptor pipeline, serialization
/// contexts and endpoint routing for every call): a middleware ahead of routing finds the method by
/// its path, reads the request from the body pipe, calls the shard's face and writes the answer
/// and its status. At 1,000 clients that took 14–40% of the member's CPU per call. Kestrel stays
/// the HTTP/2 transport; Grpc.AspNetCore serves the long-lived streams (Watch, Snapshot, Observe),
/// whose per-call cost is paid once per stream.
/// </summary>
/// <remarks>
/// A call goes through what <see cref="EtcdCallInterceptor"/> does for those streams: counted in
/// <see cref="GrpcMetrics"/>, refused with "etcdserver: no leader" when it requires a leader
/// (<c>hasleader</c>) while the shard cannot reach the journal, and ended with etcd's status for
/// what the face threw. Its grpc-timeout cancels the face's work and ends it with DeadlineExceeded.
/// Request messages: limits, gzip and parse errors as in grpc-go (<see cref="GrpcMessages"/>).
/// </remarks>
public sealed class HandBoundGrpc
{
    /// <summary>Serves one call on the face of its shard; writes the response messages, not the status.</summary>
    public delegate Task Serve(HttpContext http, ShardServer face, CancellationToken cancellationToken);

    private readonly ShardRouter _router;
    private readonly GrpcMetrics _metrics;
    private readonly ILogger _logger;
    private readonly FrozenDictionary<string, RequestDelegate> _methods;

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
        var keepAlive = new Lease.KeepAliveStream(this);
        Add(methods, "bidi_stream", "etcdserverpb.Lease", "LeaseKeepAlive", unary: false, keepAlive.ServeAsync);
        _methods = methods.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>The largest request message (etcd: --max-request-bytes plus gRPC's overhead).</summary>
    public int MaxMessageBytes { get; }

    /// <summary>Whether client certificates name users (--client-cert-auth).</summary>
    public bool ClientCertAuth { get; }

    /// <summary>The middleware: a gRPC call of a hand-bound method is served here, anything else goes on.</summary>
    public RequestDelegate Middleware(RequestDelegate next) => http =>
        http.Request.Path.Value is { } path && _methods.TryGetValue(path, out var serve) && IsGrpc(http.Request) ? serve(http) : next(http);

    private static bool IsGrpc(HttpRequest request) =>
        request.ContentType is { } type && type.StartsWith("application/grpc", StringComparison.Ordinal) && !type.StartsWith("application/grpc-web", StringComparison.Ordinal)
        && HttpProtocol.IsHttp2(request.Protocol);

    private void Add(Dictionary<string, RequestDelegate> methods, string type, string service, string name, bool unary, Serve serve)
    {
        string path = $"/{service}/{name}";
        var counters = _metrics.For(type, path);
        methods.Add(path, http => CallAsync(http, counters, unary, serve));
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
            grpc.Add(methods, "unary", method.Service, method.Name, unary: true, async (http, face, ct) =>
            {
                var request = await GrpcMessages.ReadAsync(http.Request, method.Parser, grpc.MaxMessageBytes, MethodType.Unary, ct).ConfigureAwait(false)
                    ?? throw new RpcException(new Status(StatusCode.Internal, "grpc: the request ended before its message"));
                var response = await method.Serve(face, request, CallMetadata.Who(http, face, grpc.ClientCertAuth), ct).ConfigureAwait(false);
                GrpcMessages.Write(http.Response.BodyWriter, response);
            });
    }
}
