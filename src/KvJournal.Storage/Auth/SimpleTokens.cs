using System.Collections.Concurrent;

namespace KvJournal.Storage.Auth;

/// <summary>
/// etcd's simple tokens: opaque strings made valid on every member by applying the login entry,
/// each expiring after --auth-token-ttl without use (the clock is this member's; tokens are not part
/// of the shared state, so a restarted member forgets them and clients log in again, as with etcd).
/// </summary>
public sealed class SimpleTokens(TimeSpan ttl)
{
    private readonly ConcurrentDictionary<string, Entry> _tokens = new(StringComparer.Ordinal);

    private sealed class Entry(string user, long lastUsedMs)
    {
        public string User { get; } = user;
        public long LastUsedMs = lastUsedMs;
    }

    public TimeSpan Ttl { get; } = ttl;

    /// <summary>Makes <paramref name="token"/> stand for <paramref name="user"/>, unless the login is already older than the TTL (a replayed entry).</summary>
    public void Assign(string token, string user, long atUnixMs, long nowUnixMs)
    {
        if (nowUnixMs - atUnixMs > (long)Ttl.TotalMilliseconds) return;
        _tokens[token] = new Entry(user, nowUnixMs);
        // Tokens nobody presents again are dropped here, every so many logins.
        if (Interlocked.Increment(ref _assigned) % 256 == 0) Sweep(nowUnixMs);
    }

    private long _assigned;

    private void Sweep(long nowUnixMs)
    {
        foreach (var (token, entry) in _tokens)
            if (nowUnixMs - Volatile.Read(ref entry.LastUsedMs) > (long)Ttl.TotalMilliseconds) _tokens.TryRemove(token, out _);
    }

    /// <summary>The user a live token stands for; each use restarts its TTL.</summary>
    public bool TryGetUser(string token, long nowUnixMs, out string user)
    {
        user = "";
        if (!_tokens.TryGetValue(token, out var entry)) return false;
        if (nowUnixMs - Volatile.Read(ref entry.LastUsedMs) > (long)Ttl.TotalMilliseconds)
        {
            _tokens.TryRemove(token, out _);
            return false;
        }
        Volatile.Write(ref entry.LastUsedMs, nowUnixMs);
        user = entry.User;
        return true;
    }

    /// <summary>Drops the tokens of a deleted user or one whose password changed.</summary>
    public void InvalidateUser(string user)
    {
        foreach (var (token, entry) in _tokens)
            if (entry.User == user) _tokens.TryRemove(token, out _);
    }

    public void Clear() => _tokens.Clear();
}
