namespace KvJournal.Journal.Nats;

/// <summary>How a member reaches the replicated journal: NATS JetStream over 3 or 5 nats-server nodes.</summary>
public sealed record NatsJournalOptions
{
    /// <summary>The servers (nats://host:port), any of which the client may use.</summary>
    public required IReadOnlyList<Uri> Servers { get; init; }

    /// <summary>Replicas every stream must have (--journal-replicas); a weaker existing stream is refused.</summary>
    public int Replicas { get; init; } = 3;

    /// <summary>This member's id: names its messages (Nats-Msg-Id), so a retried publish is dropped as a duplicate.</summary>
    public ulong MemberId { get; init; }

    /// <summary>The largest entry the member appends; a message holds it alone, so the stream takes messages this large plus framing.</summary>
    public required int MaxEntryBytes { get; init; }

    /// <summary>
    /// How long an append or a read index waits for the journal (a NATS leader election after a
    /// crash takes 4–9 s) before it fails as etcd's "request timed out" (--journal-request-timeout).
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a starting member that reached a server waits for JetStream to answer: nodes
    /// started together elect their meta leader within seconds, which can be longer than a short
    /// request timeout.
    /// </summary>
    public TimeSpan StartTimeout => RequestTimeout > MinStartTimeout ? RequestTimeout : MinStartTimeout;

    private static readonly TimeSpan MinStartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>User name and password (--journal-user, --journal-password-file).</summary>
    public string? User { get; init; }
    public string? Password { get; init; }

    /// <summary>TLS: the CA that signed the servers' certificates, and this member's certificate and key (mutual TLS).</summary>
    public string? CaFile { get; init; }
    public string? CertFile { get; init; }
    public string? KeyFile { get; init; }

    /// <summary>How long a retried publish is recognised as a duplicate: well past any retry.</summary>
    public static TimeSpan DuplicateWindow { get; } = TimeSpan.FromMinutes(2);
}
