using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Which member leads, from the journal alone: the lowest id among members whose latest
/// announcement (heartbeat) is among the last 2 × (members) announcements. Every applier of the
/// same entries names the same leader, with no clock involved.
/// </summary>
public sealed class LeaderTests
{
    private static ulong _request;

    private static void Beat(KvApplier applier, ulong member) =>
        Assert.Equal(EtcdError.None, applier.Apply(new JournalEntry { MemberId = member, RequestId = Interlocked.Increment(ref _request), MemberAnnounce = new MemberAnnounce { MemberId = member, Name = $"m{member}" } }).Error);

    [Fact]
    public void TheLowestMemberStillHeardFromLeadsAndAQuietOneLosesItAfterAFewRounds()
    {
        var applier = AppliedState.New().Applier;
        Assert.Equal(0UL, applier.LeaderId);
        foreach (ulong m in new ulong[] { 30, 10, 20 }) Beat(applier, m);
        Assert.Equal(10UL, applier.LeaderId);

        // Member 10 goes quiet: it leads until the others' heartbeats leave it 2 × 3 behind.
        var leaders = new List<ulong>();
        for (int round = 0; round < 5; round++)
        {
            Beat(applier, 20);
            Beat(applier, 30);
            leaders.Add(applier.LeaderId);
        }
        Assert.Equal([10UL, 10UL, 20UL, 20UL, 20UL], leaders);

        // Back: it leads again from its next heartbeat.
        Beat(applier, 10);
        Assert.Equal(10UL, applier.LeaderId);
        Assert.Equal(3, applier.Members.Count); // a quiet member stays listed, as in etcd's member list
    }
}
