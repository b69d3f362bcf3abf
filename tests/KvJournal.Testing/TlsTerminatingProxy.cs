using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;

namespace KvJournal.Testing;

/// <summary>
/// What stunnel or a service mesh sidecar does in front of a plaintext server: accepts TLS on a
/// loopback port (ALPN h2) and relays the decrypted bytes to 127.0.0.1:<c>backendPort</c>, so the
/// client's HTTP/2 frames, <c>:scheme https</c> included, reach a plaintext listener as they are.
/// </summary>
public sealed class TlsTerminatingProxy : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly X509Certificate2 _certificate;
    private readonly int _backendPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public TlsTerminatingProxy(TlsFiles tls, int backendPort)
    {
        _certificate = X509Certificate2.CreateFromPemFile(tls.ServerCert, tls.ServerKey);
        _backendPort = backendPort;
        _listener.Start();
        _accepting = Task.Run(AcceptAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    private async Task AcceptAsync()
    {
        var relays = new List<Task>();
        try
        {
            while (true) relays.Add(RelayAsync(await _listener.AcceptTcpClientAsync(_stop.Token)));
        }
        catch (OperationCanceledException)
        {
        }
        await Task.WhenAll(relays);
    }

    private async Task RelayAsync(TcpClient client)
    {
        using (client)
        using (var backend = new TcpClient())
        {
            try
            {
                await using var tls = new SslStream(client.GetStream());
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificate = _certificate,
                    ApplicationProtocols = [SslApplicationProtocol.Http2],
                }, _stop.Token);
                await backend.ConnectAsync(IPAddress.Loopback, _backendPort, _stop.Token);
                var plain = backend.GetStream();
                // Either side ending ends the relay.
                await Task.WhenAny(tls.CopyToAsync(plain, _stop.Token), plain.CopyToAsync(tls, _stop.Token));
            }
            catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _certificate.Dispose();
        _stop.Dispose();
    }
}
