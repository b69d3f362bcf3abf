using KvJournal.Member.Logging;
using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;

namespace KvJournal.Member.Leases;

/// <summary>
/// Finds leases past their deadline and proposes their expiry to the journal; the expiry takes
/// effect when applied, so every member revokes the same lease at the same revision. Only the
/// member reported as leader proposes them, as in etcd (another takes over within a few heartbeats
/// when it is gone); should two briefly both think they lead, the second expiry applies as a no-op.
/// </summary>
/// <remarks>
/// Like etcd, at most 500 leases are expired per half second (1,000 a second), so a mass expiry is
/// spread out and writes keep being served while it runs. A lease is therefore revoked between its
/// deadline and its deadline + 0.5 s (plus one journal commit), or later during a mass expiry.
/// </remarks>
internal sealed class LeaseExpiry(Shard shard)
{
    private const int PerRound = 500;
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);
    private readonly DutyFailures _failures = new(shard.Logs.CreateLogger("KvJournal.Lease"), "lease expiry", shard.Time);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Interval, shard.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                // A mirror's leases expire at its source, whose deletes it follows.
                if (shard.LeaderId != shard.MemberId || shard.Mirroring) continue;
                long now = shard.NowUnixMs();
                var due = shard.Read(_ => shard.Leases.Expired(now, PerRound));
                if (due.Count == 0) continue;
                var proposals = new Task<ApplyResult>[due.Count];
                for (int i = 0; i < due.Count; i++)
                    proposals[i] = shard.ProposeAsync(new JournalEntry { LeaseExpire = new LeaseExpire { Id = due[i], AtUnixMs = now } }, cancellationToken);
                // A failed proposal (journal unavailable) is retried by the next round.
                try
                {
                    // The round's worst outcome: a lease already revoked is not a failure, the journal away is.
                    var worst = EtcdError.None;
                    foreach (var r in await Task.WhenAll(proposals).ConfigureAwait(false))
                        if (DutyFailures.IsFailure(r.Error)) worst = r.Error;
                    _failures.Outcome(worst);
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
