namespace KvJournal.Storage.Apply;

/// <summary>
/// A request refused or failed with one of etcd's errors. The shard's face throws it; the gRPC
/// services and the JSON gateway turn it into etcd's answer through <see cref="EtcdErrorTable"/>.
/// </summary>
public sealed class EtcdException(EtcdError error) : Exception(EtcdErrorTable.Describe(error).Message)
{
    public EtcdError Error { get; } = error;

    public EtcdStatus Status => EtcdErrorTable.Describe(Error);
}
