using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;

namespace KvJournal.Server.Hosting;

/// <summary>
/// Serves gRPC (HTTP/2 with prior knowledge) and HTTP/1.1 (/health, /metrics, …) on one cleartext
/// client port, as etcd does. Kestrel cannot choose the protocol per connection without TLS, so
/// the client endpoint is HTTP/2 only and this connection middleware looks at the first bytes: the
/// HTTP/2 connection preface goes on to Kestrel's HTTP/2 pipeline untouched; anything else is
/// relayed to an internal loopback HTTP/1.1 endpoint. Only HTTP/1.1 traffic pays for the relay.
/// </summary>
public sealed class ClientPortSplitter
{
    private static ReadOnlySpan<byte> Http2Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    /// <summary>The internal HTTP/1.1 endpoint, known once the server has bound it.</summary>
    public IPEndPoint? Http1Endpoint { get; set; }

    /// <summary>How long a new connection may take to send enough bytes to tell its protocol (Kestrel's header timeout).</summary>
    private static readonly TimeSpan FirstBytesTimeout = TimeSpan.FromSeconds(30);

    public ConnectionDelegate Wrap(ConnectionDelegate next) => async connection =>
    {
        var input = connection.Transport.Input;
        using var firstBytes = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
        firstBytes.CancelAfter(FirstBytesTimeout);
        while (true)
        {
            ReadResult read;
            try
            {
                read = await input.ReadAsync(firstBytes.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return; // silent or too slow to say anything: close it, as Kestrel would
            }
            var kind = Classify(read.Buffer);
            if (kind is null && !read.IsCompleted)
            {
                // Too few bytes to tell: wait for more without consuming any.
                input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                continue;
            }
            // Leave every byte for whoever serves the connection.
            input.AdvanceTo(read.Buffer.Start);
            if (kind is null) return; // closed before a request
            if (kind.Value) await next(connection).ConfigureAwait(false);
            else await RelayAsync(connection).ConfigureAwait(false);
            return;
        }
    };

    // true = HTTP/2 preface, false = something else, null = undecided yet.
    private static bool? Classify(ReadOnlySequence<byte> buffer)
    {
        int n = (int)Math.Min(buffer.Length, Http2Preface.Length);
        Span<byte> head = stackalloc byte[Http2Preface.Length];
        buffer.Slice(0, n).CopyTo(head);
        if (!head[..n].SequenceEqual(Http2Preface[..n])) return false;
        return n == Http2Preface.Length ? true : null;
    }

    private async Task RelayAsync(ConnectionContext connection)
    {
        if (Http1Endpoint is not { } target) return;
        using var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(target, connection.ConnectionClosed).ConfigureAwait(false);
        var backend = new NetworkStream(socket, ownsSocket: false);
        await using var closeBackend = backend.ConfigureAwait(false);
        var toBackend = Task.Run(async () =>
        {
            try { await connection.Transport.Input.CopyToAsync(backend, connection.ConnectionClosed).ConfigureAwait(false); }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException) { }
            try { socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { }
        });
        try
        {
            await backend.CopyToAsync(connection.Transport.Output.AsStream(leaveOpen: true), connection.ConnectionClosed).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException) { }
        await connection.Transport.Output.CompleteAsync().ConfigureAwait(false);
        await connection.Transport.Input.CompleteAsync().ConfigureAwait(false);
        await toBackend.ConfigureAwait(false);
    }
}
