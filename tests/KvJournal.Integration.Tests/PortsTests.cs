using KvJournal.Testing;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>The harness's free ports: a test that starts a server with several listeners needs distinct ones.</summary>
public sealed class PortsTests
{
    [Fact]
    public void NoPortIsHandedOutTwice()
    {
        // 2,000 picks from Linux's ~28,000 ephemeral ports repeat one with near certainty unless
        // the harness remembers what it handed out.
        var seen = new HashSet<int>();
        for (int i = 0; i < 2000; i++) Assert.True(seen.Add(Ports.Free()), $"pick {i} repeated a port");
    }
}
