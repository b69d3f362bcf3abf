using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Grpc;

/// <summary>A call's deadline, from its grpc-timeout header (etcdctl's --command-timeout, a client's context deadline).</summary>
public static class GrpcDeadline
{
    // CancelAfter's limit; a longer timeout is as good as none.
    private static readonly TimeSpan Longest = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    /// <summary>A token source cancelled when the call's deadline passes or the client goes; null when the call has no deadline.</summary>
    public static CancellationTokenSource? Start(HttpContext http)
    {
        if (Parse(http.Request.Headers["grpc-timeout"].ToString()) is not { } timeout) return null;
        var source = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        source.CancelAfter(timeout);
        return source;
    }

    /// <summary>gRPC's TimeoutValue TimeoutUnit: up to 8 digits and one of H, M, S, m, u, n; null when absent, malformed or too long to matter.</summary>
    public static TimeSpan? Parse(string header)
    {
        if (header.Length is < 2 or > 9) return null;
        long value = 0;
        foreach (char c in header.AsSpan(0, header.Length - 1))
        {
            if (c is < '0' or > '9') return null;
            value = value * 10 + (c - '0');
        }
        TimeSpan timeout = header[^1] switch
        {
            'H' => TimeSpan.FromHours(value),
            'M' => TimeSpan.FromMinutes(value),
            'S' => TimeSpan.FromSeconds(value),
            'm' => TimeSpan.FromMilliseconds(value),
            'u' => TimeSpan.FromMicroseconds(value),
            'n' => TimeSpan.FromTicks(value / 100),
            _ => TimeSpan.MinValue,
        };
        if (timeout == TimeSpan.MinValue || timeout > Longest) return null;
        return timeout;
    }
}
