namespace KvJournal.Storage.Apply;

/// <summary>gRPC's status codes, by number (the same as Grpc.Core's StatusCode and Go's codes).</summary>
public enum RpcCode
{
    OK = 0,
    Canceled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// <summary>What a client hears for an error: the gRPC code and the exact message.</summary>
public readonly record struct EtcdStatus(RpcCode Code, string Message)
{
    /// <summary>As grpc-go prints a status error (etcd puts this text in a watch's cancel reason).</summary>
    public override string ToString() => $"rpc error: code = {Code} desc = {Message}";
}

/// <summary>
/// The one table from a KvJournal error to etcd's answer: the same code and the exact message
/// etcd sends (etcd: api/v3rpc/rpctypes/error.go), since clients match on both. The gRPC services
/// and the JSON gateway both answer through it.
/// </summary>
public static class EtcdErrorTable
{
    public static EtcdStatus Describe(EtcdError error) => error switch
    {
        EtcdError.Compacted => new(RpcCode.OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
        EtcdError.FutureRevision => new(RpcCode.OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        EtcdError.KeyNotFound => new(RpcCode.InvalidArgument, "etcdserver: key not found"),
        EtcdError.EmptyOp => new(RpcCode.InvalidArgument, "etcdserver: key not found"),
        EtcdError.LeaseNotFound => new(RpcCode.NotFound, "etcdserver: requested lease not found"),
        EtcdError.LeaseExists => new(RpcCode.FailedPrecondition, "etcdserver: lease already exists"),
        EtcdError.LeaseTtlTooLarge => new(RpcCode.OutOfRange, "etcdserver: too large lease TTL"),
        EtcdError.NoSpace => new(RpcCode.ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        EtcdError.RequestTooLarge => new(RpcCode.InvalidArgument, "etcdserver: request is too large"),
        EtcdError.EmptyKey => new(RpcCode.InvalidArgument, "etcdserver: key is not provided"),
        EtcdError.ValueProvided => new(RpcCode.InvalidArgument, "etcdserver: value is provided"),
        EtcdError.LeaseProvided => new(RpcCode.InvalidArgument, "etcdserver: lease is provided"),
        EtcdError.TooManyOps => new(RpcCode.InvalidArgument, "etcdserver: too many operations in txn request"),
        EtcdError.DuplicateKey => new(RpcCode.InvalidArgument, "etcdserver: duplicate key given in txn request"),
        EtcdError.JournalUnavailable => new(RpcCode.Unavailable, "etcdserver: request timed out, journal unavailable"),
        EtcdError.Stopped => new(RpcCode.Unavailable, "etcdserver: server stopped"),
        // etcd has neither: it serves any depth (Go stacks grow) and has no fault short of a panic.
        EtcdError.TxnTooDeep => new(RpcCode.InvalidArgument, "etcdserver: txn nested too deeply"),
        EtcdError.UnknownAlarm => new(RpcCode.InvalidArgument, "etcdserver: unknown alarm type"),
        EtcdError.NoLeader => new(RpcCode.Unavailable, "etcdserver: no leader"),
        EtcdError.BadLeaderTransferee => new(RpcCode.FailedPrecondition, "etcdserver: bad leader transferee"),
        EtcdError.NoInflightDowngrade => new(RpcCode.FailedPrecondition, "etcdserver: no inflight downgrade job"),
        EtcdError.InvalidDowngradeTarget => new(RpcCode.InvalidArgument, "etcdserver: invalid downgrade target version"),
        // KvJournal's own: etcd has no answer for members that join by sharing a journal.
        EtcdError.TooManyRequests => new(RpcCode.ResourceExhausted, "etcdserver: too many requests"),
        EtcdError.MirrorReadOnly => new(RpcCode.FailedPrecondition, "etcdserver: this member mirrors an etcd cluster and takes writes only after its cut-over"),
        EtcdError.NotMirroring => new(RpcCode.FailedPrecondition, "etcdserver: this member is not mirroring an etcd cluster"),
        EtcdError.MembershipByJournal => new(RpcCode.FailedPrecondition, "etcdserver: KvJournal members join by serving the same journal; raft membership changes are not used"),
        // etcd's election service answers these with code Unknown.
        EtcdError.ElectionNotLeader => new(RpcCode.Unknown, "election: not leader"),
        EtcdError.ElectionNoLeader => new(RpcCode.Unknown, "election: no leader"),
        EtcdError.ApplyFailed => new(RpcCode.Internal, "etcdserver: request could not be applied"),
        EtcdError.PermissionDenied => new(RpcCode.PermissionDenied, "etcdserver: permission denied"),
        EtcdError.UserEmpty => new(RpcCode.InvalidArgument, "etcdserver: user name is empty"),
        EtcdError.InvalidAuthToken => new(RpcCode.Unauthenticated, "etcdserver: invalid auth token"),
        EtcdError.AuthNotEnabled => new(RpcCode.FailedPrecondition, "etcdserver: authentication is not enabled"),
        EtcdError.AuthFailed => new(RpcCode.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
        EtcdError.UserAlreadyExists => new(RpcCode.FailedPrecondition, "etcdserver: user name already exists"),
        EtcdError.UserNotFound => new(RpcCode.FailedPrecondition, "etcdserver: user name not found"),
        EtcdError.RoleAlreadyExists => new(RpcCode.FailedPrecondition, "etcdserver: role name already exists"),
        EtcdError.RoleNotFound => new(RpcCode.FailedPrecondition, "etcdserver: role name not found"),
        EtcdError.RoleEmpty => new(RpcCode.InvalidArgument, "etcdserver: role name is empty"),
        EtcdError.RootUserNotExist => new(RpcCode.FailedPrecondition, "etcdserver: root user does not exist"),
        EtcdError.RootRoleNotExist => new(RpcCode.FailedPrecondition, "etcdserver: root user does not have root role"),
        EtcdError.PermissionNotGiven => new(RpcCode.InvalidArgument, "etcdserver: permission not given"),
        EtcdError.RoleNotGranted => new(RpcCode.FailedPrecondition, "etcdserver: role is not granted to the user"),
        EtcdError.PermissionNotGranted => new(RpcCode.FailedPrecondition, "etcdserver: permission is not granted to the role"),
        // etcd has no gRPC error for this one: clients see the auth store's own text, code Unknown.
        EtcdError.NoPasswordUser => new(RpcCode.Unknown, "auth: authentication failed, password was given for no password user"),
        EtcdError.InvalidAuthMgmt => new(RpcCode.InvalidArgument, "etcdserver: invalid auth management"),
        EtcdError.AuthOldRevision => new(RpcCode.InvalidArgument, "etcdserver: revision of auth store is old"),
        EtcdError.SessionExpired => new(RpcCode.Unknown, "mutex: session is expired"),
        EtcdError.LeaderKeyMissing => new(RpcCode.Unknown, "\"leader\" field must be provided"),
        EtcdError.UnknownHealthService => new(RpcCode.NotFound, "unknown service"),
        _ => new(RpcCode.Internal, $"etcdserver: unexpected error {error}"),
    };
}
