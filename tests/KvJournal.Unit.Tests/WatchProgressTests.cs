using Etcdserverpb;
using KvJournal.Member.Face;
using Microsoft.Extensions.Time.Testing;
using Xunit;
using static KvJournal.Unit.Tests.FaceHost;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Watch progress notifications on the shard's clock (FakeTimeProvider): one comes when the
/// interval has passed, with the current revision, and none before.
/// </summary>
public sealed class WatchProgressTests
{
    [Fact]
    public async Task AWatcherWithoutEventsHearsTheRevisionOnceTheIntervalHasPassed()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
        await using var host = await StartAsync(time); // progress every 10 minutes
        var put = await host.Face.PutAsync(new PutRequest { Key = B("elsewhere"), Value = B("v") }, CallerIdentity.None, CancellationToken.None);
        await using var watch = FaceWatch.Open(host.Face, CallerIdentity.None);
        watch.Send(new WatchRequest { CreateRequest = new WatchCreateRequest { Key = B("p/"), RangeEnd = B("p0"), ProgressNotify = true } });
        Assert.True((await watch.NextAsync()).Created);

        time.Advance(TimeSpan.FromMinutes(9));
        // A put in the watched range after 9 minutes is the next response: no progress came first.
        var inRange = await host.Face.PutAsync(new PutRequest { Key = B("p/a"), Value = B("v") }, CallerIdentity.None, CancellationToken.None);
        Assert.Single((await watch.NextAsync()).Events);

        // Past the interval (and the next, as a watcher that just had an event may skip one tick): progress with the current revision.
        time.Advance(TimeSpan.FromMinutes(1));
        time.Advance(TimeSpan.FromMinutes(10));
        var progress = await watch.NextAsync();
        Assert.Empty(progress.Events);
        Assert.False(progress.Created);
        Assert.Equal(inRange.Header.Revision, progress.Header.Revision);
        Assert.True(inRange.Header.Revision > put.Header.Revision);
    }
}
