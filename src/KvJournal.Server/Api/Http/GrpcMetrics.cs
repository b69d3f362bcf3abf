using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Grpc.Core;

namespace KvJournal.Server.Api.Http;

/// <summary>
/// grpc_server_started_total and grpc_server_handled_total, as go-grpc-prometheus names them (etcd
/// exports those): one counter per service, method, call type and status code.
/// </summary>
public sealed class GrpcMetrics
{
    // Keyed by the full method name as the call carries it: split into service and method only
    // when /metrics is read, not on every call.
    private readonly ConcurrentDictionary<(string Type, string FullMethod), long[]> _started = new();
    private readonly ConcurrentDictionary<(string Type, string FullMethod, StatusCode Code), long[]> _handled = new();

    internal void Started(string type, string fullMethod) =>
        Interlocked.Increment(ref _started.GetOrAdd((type, fullMethod), static _ => new long[1])[0]);

    internal void Handled(string type, string fullMethod, StatusCode code) =>
        Interlocked.Increment(ref _handled.GetOrAdd((type, fullMethod, code), static _ => new long[1])[0]);

    /// <summary>How long unary calls take to serve, all methods together.</summary>
    internal KvJournal.Member.Metrics.LatencyHistogram UnaryLatency { get; } = new();

    public void WriteTo(StringBuilder text)
    {
        UnaryLatency.WriteTo(text, "grpc_server_handling_seconds", "Time to serve a unary call, from its request to its response (all methods).");
        text.Append("# HELP grpc_server_started_total Total number of RPCs started on the server.\n# TYPE grpc_server_started_total counter\n");
        foreach (var (k, v) in _started.OrderBy(e => e.Key))
        {
            var (service, method) = Split(k.FullMethod);
            text.Append(CultureInfo.InvariantCulture, $"grpc_server_started_total{{grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{k.Type}\"}} {Interlocked.Read(ref v[0])}\n");
        }
        text.Append("# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n# TYPE grpc_server_handled_total counter\n");
        foreach (var (k, v) in _handled.OrderBy(e => e.Key))
        {
            var (service, method) = Split(k.FullMethod);
            text.Append(CultureInfo.InvariantCulture, $"grpc_server_handled_total{{grpc_code=\"{k.Code}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{k.Type}\"}} {Interlocked.Read(ref v[0])}\n");
        }
    }

    // "/etcdserverpb.KV/Range" → ("etcdserverpb.KV", "Range")
    private static (string Service, string Method) Split(string fullMethod)
    {
        int slash = fullMethod.LastIndexOf('/');
        return (fullMethod[1..slash], fullMethod[(slash + 1)..]);
    }
}
