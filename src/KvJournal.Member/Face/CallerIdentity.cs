namespace KvJournal.Member.Face;

/// <summary>
/// What a request carries to say who makes it, as the transport saw it: the simple token (gRPC
/// "token" metadata, or the gateway's Authorization header) and, under --client-cert-auth, the
/// common name of the client certificate. <see cref="ShardServer"/> turns it into a user.
/// </summary>
public readonly record struct CallerIdentity(string? Token, string? CertificateName)
{
    /// <summary>No credentials: with auth on, every permission check refuses it ("user name is empty").</summary>
    public static CallerIdentity None => default;
}
