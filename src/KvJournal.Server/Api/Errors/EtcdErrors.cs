using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// The one table from a KvJournal error to etcd's gRPC status: the same code and the exact message
/// etcd sends (etcd: api/v3rpc/rpctypes/error.go), since clients match on both.
/// </summary>
public static class EtcdErrors
{
    public static Status ToStatus(EtcdError error) => error switch
    {
        EtcdError.Compacted => new(StatusCode.OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
        EtcdError.FutureRevision => new(StatusCode.OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        EtcdError.KeyNotFound => new(StatusCode.InvalidArgument, "etcdserver: key not found"),
        EtcdError.EmptyOp => new(StatusCode.InvalidArgument, "etcdserver: key not found"),
        EtcdError.LeaseNotFound => new(StatusCode.NotFound, "etcdserver: requested lease not found"),
        EtcdError.LeaseExists => new(StatusCode.FailedPrecondition, "etcdserver: lease already exists"),
        EtcdError.LeaseTtlTooLarge => new(StatusCode.OutOfRange, "etcdserver: too large lease TTL"),
        EtcdError.NoSpace => new(StatusCode.ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        EtcdError.RequestTooLarge => new(StatusCode.InvalidArgument, "etcdserver: request is too large"),
        EtcdError.EmptyKey => new(StatusCode.InvalidArgument, "etcdserver: key is not provided"),
        EtcdError.ValueProvided => new(StatusCode.InvalidArgument, "etcdserver: value is provided"),
        EtcdError.LeaseProvided => new(StatusCode.InvalidArgument, "etcdserver: lease is provided"),
        EtcdError.TooManyOps => new(StatusCode.InvalidArgument, "etcdserver: too many operations in txn request"),
        EtcdError.DuplicateKey => new(StatusCode.InvalidArgument, "etcdserver: duplicate key given in txn request"),
        EtcdError.JournalUnavailable => new(StatusCode.Unavailable, "etcdserver: request timed out, journal unavailable"),
        EtcdError.Stopped => new(StatusCode.Unavailable, "etcdserver: server stopped"),
        _ => new(StatusCode.Internal, $"etcdserver: unexpected error {error}"),
    };

    [DoesNotReturn]
    public static void Throw(EtcdError error) => throw new RpcException(ToStatus(error));
}
