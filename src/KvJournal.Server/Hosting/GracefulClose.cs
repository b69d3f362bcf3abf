using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace KvJournal.Server.Hosting;

/// <summary>
/// A connection whose abort closes gracefully (FIN) instead of resetting it (RST). Kestrel aborts
/// an HTTP/2 connection when the client half-closes it (a client or proxy that shuts down its
/// sending side while a watch is open), and the socket transport then resets it; etcd closes it
/// normally, and proxies and clients that treat a reset as an error rely on that.
/// </summary>
internal sealed class GracefulClose(ConnectionContext inner) : ConnectionContext
{
    public static ConnectionDelegate Wrap(ConnectionDelegate next) => connection => next(new GracefulClose(connection));

    public override string ConnectionId { get => inner.ConnectionId; set => inner.ConnectionId = value; }
    public override IFeatureCollection Features => inner.Features;
    public override IDictionary<object, object?> Items { get => inner.Items; set => inner.Items = value; }
    public override IDuplexPipe Transport { get => inner.Transport; set => inner.Transport = value; }
    public override CancellationToken ConnectionClosed { get => inner.ConnectionClosed; set => inner.ConnectionClosed = value; }
    public override EndPoint? LocalEndPoint { get => inner.LocalEndPoint; set => inner.LocalEndPoint = value; }
    public override EndPoint? RemoteEndPoint { get => inner.RemoteEndPoint; set => inner.RemoteEndPoint = value; }

    // Ending the output lets the transport shut the socket down as after a normal close (its
    // receive side then ends too); Kestrel keeps reading the input until it does.
    public override void Abort(ConnectionAbortedException abortReason) => inner.Transport.Output.Complete();

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }
}
