using System.Text;
using Grpc.Core;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Grpc;

/// <summary>How a hand-bound call tells the client how it ended: grpc-status and grpc-message.</summary>
public static class GrpcStatuses
{
    /// <summary>
    /// Ends the call with <paramref name="status"/>: in the trailers after its answer, or, for a
    /// call that failed before its response started, in the headers of a response without a body
    /// (gRPC's trailers-only response, as grpc-go sends an error before any message). A failing
    /// call has no unflushed message: it fails before writing one, or flushes first.
    /// </summary>
    public static void End(HttpResponse response, Status status)
    {
        if (status.StatusCode != StatusCode.OK && !response.HasStarted)
        {
            response.Headers["grpc-status"] = StatusText((int)status.StatusCode);
            if (status.Detail.Length > 0) response.Headers["grpc-message"] = PercentEncoded(status.Detail);
            return;
        }
        response.AppendTrailer("grpc-status", StatusText((int)status.StatusCode));
        if (status.Detail.Length > 0) response.AppendTrailer("grpc-message", PercentEncoded(status.Detail));
    }

    private static readonly string[] Codes = [.. Enumerable.Range(0, (int)StatusCode.Unauthenticated + 1).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    private static string StatusText(int code) => (uint)code < Codes.Length ? Codes[code] : code.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>grpc-message as the gRPC spec sends it: UTF-8, with '%' and bytes outside printable ASCII as %XX.</summary>
    public static string PercentEncoded(string message)
    {
        bool plain = true;
        foreach (char c in message) plain &= c is >= ' ' and <= '~' and not '%';
        if (plain) return message;
        var text = new StringBuilder(message.Length + 16);
        foreach (byte b in Encoding.UTF8.GetBytes(message))
        {
            if (b is >= (byte)' ' and <= (byte)'~' and not (byte)'%') text.Append((char)b);
            else text.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }
        return text.ToString();
    }
}
