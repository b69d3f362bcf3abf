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
    // when /metrics is read. Each method holds its counters from the start (HandBoundGrpc).
    private readonly ConcurrentDictionary<(string Type, string FullMethod), MethodCounters> _methods = new();

    /// <summary>The counters of one method ("unary", "/etcdserverpb.KV/Range"); made on first use.</summary>
    public MethodCounters For(string type, string fullMethod) => _methods.GetOrAdd((type, fullMethod), static _ => new MethodCounters());

    /// <summary>How long unary calls take to serve, all methods together.</summary>
    internal KvJournal.Member.Metrics.LatencyHistogram UnaryLatency { get; } = new();

    /// <summary>One method's calls started, and ended by status code.</summary>
    public sealed class MethodCounters
    {
        private long _started;
        private readonly long[] _handled = new long[(int)StatusCode.Unauthenticated + 1];

        public void Started() => Interlocked.Increment(ref _started);

        public void Handled(StatusCode code) => Interlocked.Increment(ref _handled[(int)code]);

        internal long StartedCount => Interlocked.Read(ref _started);

        internal long HandledCount(StatusCode code) => Interlocked.Read(ref _handled[(int)code]);
    }

    public void WriteTo(StringBuilder text)
    {
        UnaryLatency.WriteTo(text, "grpc_server_handling_seconds", "Time to serve a unary call, from its request to its response (all methods).");
        // A method is listed once it was called, and a code once a call ended with it.
        var called = _methods.Where(m => m.Value.StartedCount > 0).OrderBy(m => m.Key).ToList();
        text.Append("# HELP grpc_server_started_total Total number of RPCs started on the server.\n# TYPE grpc_server_started_total counter\n");
        foreach (var (k, v) in called)
        {
            var (service, method) = Split(k.FullMethod);
            text.Append(CultureInfo.InvariantCulture, $"grpc_server_started_total{{grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{k.Type}\"}} {v.StartedCount}\n");
        }
        text.Append("# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n# TYPE grpc_server_handled_total counter\n");
        foreach (var (k, v) in called)
        {
            var (service, method) = Split(k.FullMethod);
            for (var code = StatusCode.OK; code <= StatusCode.Unauthenticated; code++)
            {
                if (v.HandledCount(code) is var n and > 0)
                    text.Append(CultureInfo.InvariantCulture, $"grpc_server_handled_total{{grpc_code=\"{GoName(code)}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{k.Type}\"}} {n}\n");
            }
        }
    }

    // grpc-go's name of a code (go-grpc-prometheus's label, etcd's): .NET spells one differently.
    private static string GoName(StatusCode code) => code == StatusCode.Cancelled ? "Canceled" : code.ToString();

    // "/etcdserverpb.KV/Range" → ("etcdserverpb.KV", "Range")
    private static (string Service, string Method) Split(string fullMethod)
    {
        int slash = fullMethod.LastIndexOf('/');
        return (fullMethod[1..slash], fullMethod[(slash + 1)..]);
    }
}
