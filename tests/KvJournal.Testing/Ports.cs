using System.Net;
using System.Net.Sockets;

namespace KvJournal.Testing;

/// <summary>Free loopback ports, found by letting the OS pick one.</summary>
public static class Ports
{
    public static int Free()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
