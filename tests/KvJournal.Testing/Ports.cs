using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace KvJournal.Testing;

/// <summary>Free loopback ports, found by letting the OS pick one.</summary>
public static class Ports
{
    // The OS may pick a port it picked a moment ago once that listener is closed, so two calls
    // for one server's listeners could name the same port (seen in CI: "port … is given to more
    // than one listener"). No port is handed out twice in a test run.
    private static readonly ConcurrentDictionary<int, byte> HandedOut = new();

    public static int Free()
    {
        while (true)
        {
            using var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            int port = ((IPEndPoint)l.LocalEndpoint).Port;
            if (HandedOut.TryAdd(port, 0)) return port;
        }
    }
}
