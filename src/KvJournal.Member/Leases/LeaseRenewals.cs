using KvJournal.Member.Shards;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;

namespace KvJournal.Member.Leases;

/// <summary>
/// Group commit for keep-alives: renewals that arrive while one batch is being journaled wait
/// and go together in the next single entry. A keep-alive is answered once its batch is
/// applied, so an answered renewal is durable and every member sees the same deadline.
/// </summary>
public sealed class LeaseRenewals(Shard shard)
{
    private readonly Lock _lock = new();
    private Dictionary<long, TaskCompletionSource<long>>? _next;
    private bool _flushing;

    /// <summary>Renews <paramref name="leaseId"/>; completes with its TTL, 0 when the lease is gone or expired.</summary>
    public Task<long> RenewAsync(long leaseId, CancellationToken cancellationToken)
    {
        TaskCompletionSource<long>? done;
        bool startFlush = false;
        lock (_lock)
        {
            _next ??= [];
            if (!_next.TryGetValue(leaseId, out done))
            {
                done = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
                _next.Add(leaseId, done);
            }
            if (!_flushing) startFlush = _flushing = true;
        }
        if (startFlush) _ = Task.Run(FlushAsync, CancellationToken.None);
        return done.Task.WaitAsync(cancellationToken);
    }

    // Journals batches until none is waiting; one batch in flight at a time.
    private async Task FlushAsync()
    {
        while (true)
        {
            Dictionary<long, TaskCompletionSource<long>>? batch;
            lock (_lock)
            {
                batch = _next;
                _next = null;
                if (batch is null)
                {
                    _flushing = false;
                    return;
                }
            }
            var renew = new LeaseRenew { AtUnixMs = shard.NowUnixMs() };
            renew.Ids.AddRange(batch.Keys);
            try
            {
                var result = await shard.ProposeAsync(new JournalEntry { LeaseRenew = renew }, CancellationToken.None).ConfigureAwait(false);
                if (result.Error != EtcdError.None) throw new LeaseRenewalException(result.Error);
                var ttls = ((LeaseRenewResult)result.Response!).Ttls;
                int i = 0;
                foreach (var done in batch.Values) done.TrySetResult(ttls[i++]);
            }
            catch (Exception ex)
            {
                foreach (var done in batch.Values) done.TrySetException(ex);
            }
        }
    }
}

/// <summary>A batch of renewals could not be journaled.</summary>
public sealed class LeaseRenewalException(EtcdError error) : Exception($"lease renewal failed: {error}")
{
    public EtcdError Error { get; } = error;
}
