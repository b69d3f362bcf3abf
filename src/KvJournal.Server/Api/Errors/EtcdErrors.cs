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
        // etcd has neither: it serves any depth (Go stacks grow) and has no fault short of a panic.
        EtcdError.TxnTooDeep => new(StatusCode.InvalidArgument, "etcdserver: txn nested too deeply"),
        EtcdError.UnknownAlarm => new(StatusCode.InvalidArgument, "etcdserver: unknown alarm type"),
        EtcdError.NoLeader => new(StatusCode.Unavailable, "etcdserver: no leader"),
        EtcdError.BadLeaderTransferee => new(StatusCode.FailedPrecondition, "etcdserver: bad leader transferee"),
        EtcdError.NoInflightDowngrade => new(StatusCode.FailedPrecondition, "etcdserver: no inflight downgrade job"),
        EtcdError.InvalidDowngradeTarget => new(StatusCode.InvalidArgument, "etcdserver: invalid downgrade target version"),
        // KvJournal's own: etcd has no answer for members that join by sharing a journal.
        EtcdError.MembershipByJournal => new(StatusCode.FailedPrecondition, "etcdserver: KvJournal members join by serving the same journal; raft membership changes are not used"),
        // etcd's election service answers these with code Unknown.
        EtcdError.ElectionNotLeader => new(StatusCode.Unknown, "election: not leader"),
        EtcdError.ElectionNoLeader => new(StatusCode.Unknown, "election: no leader"),
        EtcdError.ApplyFailed => new(StatusCode.Internal, "etcdserver: request could not be applied"),
        EtcdError.PermissionDenied => new(StatusCode.PermissionDenied, "etcdserver: permission denied"),
        EtcdError.UserEmpty => new(StatusCode.InvalidArgument, "etcdserver: user name is empty"),
        EtcdError.InvalidAuthToken => new(StatusCode.Unauthenticated, "etcdserver: invalid auth token"),
        EtcdError.AuthNotEnabled => new(StatusCode.FailedPrecondition, "etcdserver: authentication is not enabled"),
        EtcdError.AuthFailed => new(StatusCode.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
        EtcdError.UserAlreadyExists => new(StatusCode.FailedPrecondition, "etcdserver: user name already exists"),
        EtcdError.UserNotFound => new(StatusCode.FailedPrecondition, "etcdserver: user name not found"),
        EtcdError.RoleAlreadyExists => new(StatusCode.FailedPrecondition, "etcdserver: role name already exists"),
        EtcdError.RoleNotFound => new(StatusCode.FailedPrecondition, "etcdserver: role name not found"),
        EtcdError.RoleEmpty => new(StatusCode.InvalidArgument, "etcdserver: role name is empty"),
        EtcdError.RootUserNotExist => new(StatusCode.FailedPrecondition, "etcdserver: root user does not exist"),
        EtcdError.RootRoleNotExist => new(StatusCode.FailedPrecondition, "etcdserver: root user does not have root role"),
        EtcdError.PermissionNotGiven => new(StatusCode.InvalidArgument, "etcdserver: permission not given"),
        EtcdError.RoleNotGranted => new(StatusCode.FailedPrecondition, "etcdserver: role is not granted to the user"),
        EtcdError.PermissionNotGranted => new(StatusCode.FailedPrecondition, "etcdserver: permission is not granted to the role"),
        // etcd has no gRPC error for this one: clients see the auth store's own text, code Unknown.
        EtcdError.NoPasswordUser => new(StatusCode.Unknown, "auth: authentication failed, password was given for no password user"),
        EtcdError.InvalidAuthMgmt => new(StatusCode.InvalidArgument, "etcdserver: invalid auth management"),
        EtcdError.AuthOldRevision => new(StatusCode.InvalidArgument, "etcdserver: revision of auth store is old"),
        _ => new(StatusCode.Internal, $"etcdserver: unexpected error {error}"),
    };

    [DoesNotReturn]
    public static void Throw(EtcdError error) => throw new RpcException(ToStatus(error));

    /// <summary>The error as an exception to throw (for expressions: <c>?? throw EtcdErrors.Exception(...)</c>).</summary>
    public static RpcException Exception(EtcdError error) => new(ToStatus(error));

    /// <summary>grpc-go's answer to a request message that does not parse (UnparsableRequests), before the parser's own text.</summary>
    public const string UnmarshalRequest = "grpc: error unmarshalling request: ";

    /// <summary>The same for a message of a client stream.</summary>
    public const string UnmarshalStreamMessage = "grpc: failed to unmarshal the received message: ";
}
