namespace KvJournal.Member.Face;

/// <summary>
/// The etcd version KvJournal reports (Maintenance.Status, /version). Clients enable features by
/// it: kube-apiserver uses RequestWatchProgress only from 3.5.13 / any 3.6, which KvJournal
/// implements, so it reports a 3.6 API.
/// </summary>
public static class ServerVersion
{
    public const string Etcd = "3.6.0";

    /// <summary>The cluster version /version reports next to it (etcd: major.minor.0).</summary>
    public const string Cluster = "3.6.0";

    /// <summary>The storage schema version etcd 3.6 reports.</summary>
    public const string Storage = "3.6.0";
}
