namespace KvJournal.Storage.Apply;

/// <summary>
/// Exactly-once apply: the (member, request id) of the last <see cref="Window"/> entries applied.
/// A member retries an append whose outcome it could not learn (a timeout, a broken connection)
/// with the same bytes, so the journal may hold an entry twice; the second copy is recognised here
/// and skipped: no second revision, no duplicate watch event. Deterministic (every member applies
/// the same entries), so all members skip the same copies. A repeat arriving more than
/// <see cref="Window"/> entries after its original would apply again; retries come within seconds.
/// </summary>
public sealed class AppliedRequests
{
    public const int Window = 1 << 17;
    private readonly HashSet<(ulong Member, ulong Request)> _seen = [];
    private readonly Queue<(ulong Member, ulong Request)> _order = new();

    /// <summary>Records the request; false when it was applied already (within the window).</summary>
    public bool TryAdd(ulong member, ulong request)
    {
        if (!_seen.Add((member, request))) return false;
        _order.Enqueue((member, request));
        if (_order.Count > Window) _seen.Remove(_order.Dequeue());
        return true;
    }

    /// <summary>The window, oldest first (what a snapshot keeps).</summary>
    public IEnumerable<(ulong Member, ulong Request)> InOrder => _order;
}
