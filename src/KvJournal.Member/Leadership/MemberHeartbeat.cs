using KvJournal.Member.Logging;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;

namespace KvJournal.Member.Leadership;

/// <summary>
/// Re-announces this member on the journal every second while other members share it: the
/// heartbeat by which every member tells, from the journal alone, which members are still there
/// and so which one is leader (KvApplier.LeaderId). A member alone on its journal needs none.
/// </summary>
internal sealed class MemberHeartbeat(Shard shard, MemberAnnounce announce)
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private readonly DutyFailures _failures = new(shard.Logs.CreateLogger("KvJournal.Member"), "heartbeat", shard.Time);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Interval, shard.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                if (shard.Read(_ => shard.Members.Count) < 2) continue;
                // A failed proposal (the journal is away, the member stopped) is simply the next tick's to make.
                try
                {
                    var result = await shard.ProposeAsync(new JournalEntry { MemberAnnounce = announce }, cancellationToken).ConfigureAwait(false);
                    _failures.Outcome(result.Error);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    _failures.Failed(ex);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
    }
}
