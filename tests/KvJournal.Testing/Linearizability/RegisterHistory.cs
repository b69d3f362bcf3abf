namespace KvJournal.Testing.Linearizability;

/// <summary>What a client did to one key: a put, a get, or a compare-and-swap (put if the key's mod revision is as expected).</summary>
public enum OpKind { Put, Get, Cas }

/// <summary>
/// One client operation as observed: when it started and ended (one clock for all clients), and
/// what the server answered. <see cref="Acknowledged"/> false means the call failed or timed out:
/// a write's effect is then unknown (it may or may not have happened).
/// </summary>
public sealed record Op(int Client, OpKind Kind, string Key, long Start, long End, bool Acknowledged)
{
    /// <summary>Put and Cas: the value written, unique across the whole history.</summary>
    public string? Value { get; init; }
    /// <summary>Cas: the mod revision the key must have for the write to happen (0 = absent).</summary>
    public long Expected { get; init; }
    /// <summary>Acknowledged ops: the header revision (a successful write's own revision).</summary>
    public long Revision { get; init; }
    /// <summary>Cas: whether the compare held.</summary>
    public bool Succeeded { get; init; }
    /// <summary>Get: the value read (null when the key was absent) and its mod revision.</summary>
    public string? Read { get; init; }
    public long ReadModRevision { get; init; }

    public bool IsWrite => Kind == OpKind.Put || Kind == OpKind.Cas && Succeeded;
}

/// <summary>One write in the server's final history (from a watch over everything): key, value, revision.</summary>
public sealed record HistoryWrite(string Key, string Value, long Revision);

/// <summary>
/// Checks a history of single-key register operations against the server's own write history for
/// linearizability. The server orders writes by revision; the check is that this order explains
/// every answer and respects real time:
/// - every acknowledged write is in the history once, at the revision it was acknowledged with,
///   and no write is in it twice (exactly-once) or without a client having issued it;
/// - revisions are never assigned twice;
/// - a successful compare-and-swap found the key at its expected mod revision, a failed one did not;
/// - a get at revision R returned the latest write to its key at or below R;
/// - an operation that ended before another started is ordered before it (a write gets a revision
///   above every revision already answered; a read's revision is not below one).
/// Returns the violations found (empty when the history is linearizable).
/// </summary>
public static class RegisterHistory
{
    public static List<string> Check(IReadOnlyList<Op> ops, IReadOnlyList<HistoryWrite> history)
    {
        var problems = new List<string>();
        var byValue = new Dictionary<string, Op>();
        foreach (var op in ops)
        {
            if (op.Value is not null && !byValue.TryAdd(op.Value, op)) problems.Add($"test bug: value {op.Value} written twice");
        }

        // The server's writes: each issued by exactly one op, each revision once.
        var revisionOf = new Dictionary<Op, long>();
        var seenRevisions = new HashSet<long>();
        foreach (var w in history)
        {
            if (!seenRevisions.Add(w.Revision)) problems.Add($"revision {w.Revision} assigned twice");
            if (!byValue.TryGetValue(w.Value, out var op)) { problems.Add($"{w.Key}={w.Value}@{w.Revision} was never written by a client"); continue; }
            if (op.Key != w.Key) problems.Add($"{w.Value} written to {op.Key} appears on {w.Key}");
            if (!revisionOf.TryAdd(op, w.Revision)) problems.Add($"{w.Key}={w.Value} applied twice (revisions {revisionOf[op]} and {w.Revision})");
        }
        foreach (var op in ops)
        {
            if (!op.Acknowledged || !op.IsWrite) continue;
            if (!revisionOf.TryGetValue(op, out long r)) problems.Add($"acknowledged {op.Kind} {op.Key}={op.Value}@{op.Revision} is missing");
            else if (r != op.Revision) problems.Add($"acknowledged {op.Kind} {op.Key}={op.Value} at {op.Revision} is in the history at {r}");
        }
        foreach (var op in ops)
        {
            if (op.Kind == OpKind.Cas && op.Acknowledged && !op.Succeeded && revisionOf.ContainsKey(op))
                problems.Add($"failed cas {op.Key}={op.Value} was applied anyway");
        }

        // Per key, the writes in revision order: what a read at R must return.
        var perKey = history.GroupBy(w => w.Key).ToDictionary(g => g.Key, g => g.OrderBy(w => w.Revision).ToList());
        HistoryWrite? LatestAt(string key, long revision)
        {
            if (!perKey.TryGetValue(key, out var writes)) return null;
            HistoryWrite? found = null;
            foreach (var w in writes)
            {
                if (w.Revision > revision) break;
                found = w;
            }
            return found;
        }
        foreach (var op in ops)
        {
            if (!op.Acknowledged) continue;
            if (op.Kind == OpKind.Get)
            {
                var latest = LatestAt(op.Key, op.Revision);
                if (latest?.Value != op.Read || (latest is not null && latest.Revision != op.ReadModRevision))
                    problems.Add($"get {op.Key} at {op.Revision} read {op.Read ?? "nothing"}@{op.ReadModRevision}, the latest write was {latest?.Value ?? "none"}@{latest?.Revision}");
            }
            else if (op.Kind == OpKind.Cas && !op.Succeeded)
            {
                // A failed cas compared against the state at its header revision.
                long actual = LatestAt(op.Key, op.Revision)?.Revision ?? 0;
                if (actual == op.Expected) problems.Add($"cas {op.Key} expecting {op.Expected} failed at {op.Revision}, but that was the key's mod revision");
            }
        }
        foreach (var (op, r) in revisionOf)
        {
            // A cas that was applied (acknowledged or not) compared against the state just before it.
            if (op.Kind != OpKind.Cas) continue;
            long actual = LatestAt(op.Key, r - 1)?.Revision ?? 0;
            if (actual != op.Expected) problems.Add($"cas {op.Key}={op.Value} expecting {op.Expected} was applied at {r}, but the key's mod revision was {actual}");
        }

        // Real time: sweep ops by start, tracking the highest order among ops already ended.
        var placed = new List<(Op Op, long Order, bool Write)>();
        foreach (var op in ops)
        {
            // Writes the server applied (acknowledged or not) sit at their revision; answered reads
            // and failed compares at their header revision.
            if (revisionOf.TryGetValue(op, out long r)) placed.Add((op, r, true));
            else if (op.Acknowledged && !op.IsWrite) placed.Add((op, op.Revision, false));
        }
        var byStart = placed.OrderBy(p => p.Op.Start).ToList();
        var byEnd = new PriorityQueue<(Op Op, long Order, bool Write), long>();
        foreach (var p in placed.Where(p => p.Op.Acknowledged)) byEnd.Enqueue(p, p.Op.End);
        long highest = 0;
        Op? highestOp = null;
        foreach (var p in byStart)
        {
            while (byEnd.TryPeek(out var done, out long end) && end < p.Op.Start)
            {
                byEnd.Dequeue();
                if (done.Order > highest) { highest = done.Order; highestOp = done.Op; }
            }
            bool ok = p.Write ? p.Order > highest : p.Order >= highest;
            if (!ok) problems.Add($"{p.Op.Kind} {p.Op.Key} by client {p.Op.Client} ordered at {p.Order}, but {highestOp!.Kind} {highestOp.Key} at {highest} had ended before it started");
        }
        return problems;
    }
}
