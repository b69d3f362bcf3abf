using KvJournal.Testing.Linearizability;
using Xunit;

namespace KvJournal.Integration.Tests;

/// <summary>The linearizability checker itself: it accepts a correct history and names each kind of violation.</summary>
public sealed class RegisterHistoryTests
{
    private static Op Put(int client, string key, string value, long start, long end, long revision, bool acked = true) =>
        new(client, OpKind.Put, key, start, end, acked) { Value = value, Revision = revision };

    private static Op Get(int client, string key, long start, long end, long revision, string? read, long modRevision) =>
        new(client, OpKind.Get, key, start, end, true) { Revision = revision, Read = read, ReadModRevision = modRevision };

    private static Op Cas(int client, string key, string value, long expected, long start, long end, long revision, bool succeeded) =>
        new(client, OpKind.Cas, key, start, end, true) { Value = value, Expected = expected, Revision = revision, Succeeded = succeeded };

    private static readonly HistoryWrite[] TwoWrites = [new("k", "a", 2), new("k", "b", 3)];

    [Fact]
    public void AcceptsALinearizableHistory()
    {
        Op[] ops =
        [
            Put(1, "k", "a", 0, 10, 2),
            Get(2, "k", 5, 15, 2, "a", 2),     // concurrent with the put, sees it
            Cas(1, "k", "b", 2, 20, 30, 3, succeeded: true),
            Cas(2, "k", "c", 2, 31, 40, 3, succeeded: false),
            Put(3, "k", "x", 41, 50, 0, acked: false), // failed and never applied
            Get(3, "k", 51, 60, 3, "b", 3),
        ];
        Assert.Empty(RegisterHistory.Check(ops, TwoWrites));
    }

    [Fact]
    public void FindsAStaleReadALostWriteADoubleApplyAndARealTimeInversion()
    {
        Assert.Contains(RegisterHistory.Check([Put(1, "k", "a", 0, 10, 2), Put(1, "k", "b", 11, 20, 3), Get(2, "k", 21, 30, 3, "a", 2)], TwoWrites),
            p => p.StartsWith("get k at 3 read a@2", StringComparison.Ordinal));
        Assert.Contains(RegisterHistory.Check([Put(1, "k", "a", 0, 10, 2), Put(1, "k", "b", 11, 20, 3), Put(1, "k", "c", 21, 30, 4)], TwoWrites),
            p => p.Contains("c@4 is missing", StringComparison.Ordinal));
        Assert.Contains(RegisterHistory.Check([Put(1, "k", "a", 0, 10, 2)], [new("k", "a", 2), new("k", "a", 3)]),
            p => p.Contains("applied twice", StringComparison.Ordinal));
        Assert.Contains(RegisterHistory.Check([Put(1, "k", "b", 0, 10, 3), Put(2, "k", "a", 11, 20, 2)], TwoWrites),
            p => p.Contains("had ended before it started", StringComparison.Ordinal));
        Assert.Contains(RegisterHistory.Check([Put(1, "k", "a", 0, 10, 2), Cas(1, "k", "b", 0, 11, 20, 3, succeeded: true)], TwoWrites),
            p => p.Contains("expecting 0 was applied", StringComparison.Ordinal));
    }
}
