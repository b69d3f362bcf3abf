using KvJournal.Member.Face;
using KvJournal.Storage.Apply;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>A shard's write throttle: a second's worth of writes at once, then the rate; and a cap on writes in flight.</summary>
public sealed class WriteThrottleTests
{
    [Fact]
    public void TheRateAdmitsOneSecondsWorthThenRefillsWithTime()
    {
        var time = new FakeTimeProvider();
        var throttle = new WriteThrottle(writesPerSecond: 10, maxInFlight: 0, time);
        for (int i = 0; i < 10; i++)
        {
            throttle.Enter();
            throttle.Exit();
        }
        var refused = Assert.Throws<EtcdException>(throttle.Enter);
        Assert.Equal((RpcCode.ResourceExhausted, "etcdserver: too many requests"), (refused.Status.Code, refused.Status.Message));
        time.Advance(TimeSpan.FromMilliseconds(100));
        throttle.Enter(); // one token back
        Assert.Throws<EtcdException>(throttle.Enter);
        time.Advance(TimeSpan.FromSeconds(10)); // the bucket holds one second's worth, no more
        for (int i = 0; i < 10; i++) throttle.Enter();
        Assert.Throws<EtcdException>(throttle.Enter);
        Assert.Equal(3, throttle.RefusedByRate);
    }

    [Fact]
    public void WritesInFlightAreCappedAndADoneWriteMakesRoom()
    {
        var throttle = new WriteThrottle(writesPerSecond: 0, maxInFlight: 2, new FakeTimeProvider());
        throttle.Enter();
        throttle.Enter();
        Assert.Throws<EtcdException>(throttle.Enter);
        throttle.Exit();
        throttle.Enter();
        Assert.Equal(1, throttle.RefusedInFlight);
    }
}
