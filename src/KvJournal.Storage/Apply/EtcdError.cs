namespace KvJournal.Storage.Apply;

/// <summary>
/// Expected failures of applying or serving a request, as a status rather than an exception.
/// Each maps to etcd's gRPC code and exact message in one table (<see cref="EtcdErrorTable"/>).
/// </summary>
public enum EtcdError : byte
{
    None = 0,
    Compacted,
    FutureRevision,
    KeyNotFound,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    /// <summary>The keyspace is over its quota (a NOSPACE alarm is active).</summary>
    NoSpace,
    /// <summary>The encoded request exceeds --max-request-bytes.</summary>
    RequestTooLarge,
    /// <summary>The journal could not take the entry or confirm it durable.</summary>
    JournalUnavailable,
    // Request validation (etcd's v3rpc check*Request), refused before anything is proposed.
    EmptyKey,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    /// <summary>A txn operation with no request set (etcd answers "key not found").</summary>
    EmptyOp,
    /// <summary>A second copy of an entry already applied (a retried append); skipped.</summary>
    RepeatedEntry,
    /// <summary>A well-formed entry that could not be applied (a fault while applying it, or a body that does not parse); it changed nothing.</summary>
    ApplyFailed,
    /// <summary>A txn nested deeper than the journal entry format carries (JournalEntryCodec.MaxTxnDepth).</summary>
    TxnTooDeep,
    /// <summary>An alarm of a type etcd does not define (etcd 3.5 panics on one).</summary>
    UnknownAlarm,
    // Refused at the API, with no journal entry (the wire text is in EtcdErrors too).
    NoLeader,
    BadLeaderTransferee,
    NoInflightDowngrade,
    InvalidDowngradeTarget,
    MembershipByJournal,
    // A mirror of etcd (kvjournal mirror) before its cut-over, and cut-over asked of a member that is not one.
    MirrorReadOnly,
    /// <summary>A write over the shard's --shard-write-rate or --shard-max-inflight-writes.</summary>
    TooManyRequests,
    NotMirroring,
    ElectionNotLeader,
    ElectionNoLeader,
    /// <summary>The lease of a lock waiter ended while it waited (etcd's ErrSessionExpired).</summary>
    SessionExpired,
    /// <summary>An election request without its leader key.</summary>
    LeaderKeyMissing,
    /// <summary>The member stopped applying (fail-stop after an apply failure) or is shutting down.</summary>
    Stopped,
    // Auth (etcd: server/auth/store.go), refused at the API or when the entry is applied.
    PermissionDenied,
    UserEmpty,
    InvalidAuthToken,
    AuthNotEnabled,
    AuthFailed,
    UserAlreadyExists,
    UserNotFound,
    RoleAlreadyExists,
    RoleNotFound,
    RoleEmpty,
    RootUserNotExist,
    RootRoleNotExist,
    PermissionNotGiven,
    RoleNotGranted,
    PermissionNotGranted,
    InvalidAuthMgmt,
    /// <summary>A password given for a user added with no_password (certificate-only).</summary>
    NoPasswordUser,
    /// <summary>The auth store changed between checking a password and applying the login; the API checks again.</summary>
    AuthOldRevision,
    /// <summary>A gRPC health check of a service other than the member as a whole ("").</summary>
    UnknownHealthService,
}
