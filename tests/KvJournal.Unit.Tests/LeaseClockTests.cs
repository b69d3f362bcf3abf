using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Journal.Embedded;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Mvcc;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Lease deadlines and expiry on a shard hosted in-process over a real embedded journal, with the
/// clock in the test's hands (FakeTimeProvider): the deadline passes when the test says so, so
/// nothing waits for wall-clock seconds.
/// </summary>
public sealed class LeaseClockTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kvjournal-unit-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 12, 0, 0, TimeSpan.Zero));
    private FasterLogJournal _journal = null!;
    private Shard _shard = null!;

    public async Task InitializeAsync()
    {
        _journal = new FasterLogJournal(_dir, 64 * 1024);
        _shard = await Shard.OpenAsync(_journal, new ShardOptions(1, 64 * 1024, TimeSpan.FromMinutes(10)) { Time = _time }, CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _shard.CloseAsync();
        await _journal.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private bool Present(string key) => _shard.Read(txn =>
    {
        var found = new List<Mvccpb.KeyValue>();
        txn.Range(KeyRange.FromRequest(ByteString.CopyFromUtf8(key), ByteString.Empty), 0, 0, false, false, found, out _);
        return found.Count == 1;
    });

    private async Task LeasedPutAsync(string key, long lease, long ttlSeconds)
    {
        await _shard.ProposeAsync(new JournalEntry { LeaseGrant = new LeaseGrant { Id = lease, TtlSeconds = ttlSeconds, AtUnixMs = _shard.NowUnixMs() } }, CancellationToken.None);
        await _shard.ProposeAsync(new JournalEntry { Put = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFromUtf8("v"), Lease = lease } }, CancellationToken.None);
    }

    // The expiry loop runs on the fake clock's timer; its proposal is applied shortly after a tick.
    private async Task WaitUntilGoneAsync(string key)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Present(key))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{key} still present");
            _time.Advance(TimeSpan.FromMilliseconds(500)); // one expiry round further
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task ALeaseExpiresOnceTheClockPassesItsDeadlineAndARenewalMovesTheDeadline()
    {
        await LeasedPutAsync("short", 11, ttlSeconds: 5);
        await LeasedPutAsync("renewed", 12, ttlSeconds: 5);

        _time.Advance(TimeSpan.FromSeconds(4));
        Assert.Equal(5, await _shard.Renewals.RenewAsync(12, CancellationToken.None)); // deadline now + 5 s
        Assert.True(Present("short") && Present("renewed"));

        _time.Advance(TimeSpan.FromSeconds(1.5)); // past the first deadline only
        await WaitUntilGoneAsync("short");
        // The renewed lease's deadline is 4 + 5 = 9 s; the clock is at most a few rounds past 5.5 s.
        Assert.True(Present("renewed"));
        await WaitUntilGoneAsync("renewed");
        Assert.True(_time.GetUtcNow() >= new DateTimeOffset(2026, 12, 1, 12, 0, 9, TimeSpan.Zero));
    }
}
