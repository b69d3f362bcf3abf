using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Auth;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;

namespace KvJournal.Storage.Apply;

/// <summary>
/// The result of applying one entry: the response for the proposer, or an expected error;
/// <see cref="Fault"/> is the exception behind an <see cref="EtcdError.ApplyFailed"/>, for the log.
/// </summary>
public readonly record struct ApplyResult(IMessage? Response, EtcdError Error, Exception? Fault = null)
{
    public static ApplyResult Ok(IMessage response) => new(response, EtcdError.None);
    public static ApplyResult Fail(EtcdError error) => new(null, error);
}

/// <summary>
/// A well-formed entry of a kind this version does not know (written by a newer one): skipping it
/// would make this member diverge from those that apply it, so the member stops instead.
/// </summary>
public sealed class UnknownEntryException(string message) : Exception(message);

/// <summary>
/// Applies journal entries to the store, one at a time, in journal order. Deterministic: the same
/// entries applied to the same state give the same state and the same results on every member.
/// The caller holds the store's write lock.
/// </summary>
public sealed class KvApplier(MvccStore store, TxnExecutor txns, LeaseExecutor leases)
{
    /// <summary>Cluster id fixed by the journal's bootstrap entry (0 until it is applied).</summary>
    public ulong ClusterId { get; private set; }

    /// <summary>The members that announced themselves on this journal, by id (latest announcement wins).</summary>
    public IReadOnlyDictionary<ulong, MemberAnnounce> Members => _members;

    private readonly SortedDictionary<ulong, MemberAnnounce> _members = [];

    /// <summary>Active alarms, in (member, type) order (etcd's alarm store); changed only through the journal.</summary>
    public IReadOnlyCollection<AlarmMember> Alarms => _alarms.Values;

    private readonly SortedDictionary<(ulong Member, AlarmType Type), AlarmMember> _alarms = [];

    private bool NoSpace
    {
        get
        {
            // Asked on every write: enumerating a SortedDictionary allocates, so not while it is empty.
            if (_alarms.Count == 0) return false;
            foreach (var a in _alarms.Keys)
                if (a.Type == AlarmType.Nospace) return true;
            return false;
        }
    }

    /// <summary>
    /// The etcd cluster this keyspace mirrors until its cut-over (null: not a mirror). Set by the
    /// imported state a mirror starts from; cleared by the cut-over entry.
    /// </summary>
    public string? MirrorSource { get; internal set; }

    private readonly MirrorExecutor _mirror = new(store, leases);

    /// <summary>Position of the last journal entry applied (-1 before the first); set by the tailer under the write lock.</summary>
    public long Position { get; set; } = -1;

    /// <summary>Loads the applier's own state from a state snapshot, into a fresh applier.</summary>
    internal void Restore(ulong clusterId, long position)
    {
        ClusterId = clusterId;
        Position = position;
    }

    internal void RestoreMember(MemberAnnounce member)
    {
        _members[member.MemberId] = member;
        _heartbeats = Math.Max(_heartbeats, member.Heartbeat);
    }

    // Announcements applied so far (restored as the highest a member carries).
    private ulong _heartbeats;

    /// <summary>
    /// The member that does the one-doer duties (lease expiry, state snapshots): the lowest id among
    /// members whose latest announcement is among the last 2 × (members) announcements, i.e. that
    /// heartbeat within about two rounds of the others'. Every member computes the same answer at
    /// the same journal position, with no clocks involved; when the leader stops, the next lowest
    /// takes over once two rounds of heartbeats went by without it (a live member lags at most one). 0 before any announcement.
    /// </summary>
    public ulong LeaderId
    {
        get
        {
            ulong window = 2 * (ulong)_members.Count;
            foreach (var (id, m) in _members) // SortedDictionary: lowest id first
                if (_heartbeats - m.Heartbeat <= window) return id;
            return 0;
        }
    }

    internal void RestoreAlarm(AlarmMember alarm) => _alarms[(alarm.MemberID, alarm.Alarm)] = alarm;

    /// <summary>Requests applied lately, to skip an entry the journal holds twice after a retried append.</summary>
    public AppliedRequests AppliedRequests { get; } = new();

    /// <summary>Users, roles and permissions; entries are checked against it as they are applied.</summary>
    public AuthStore Auth { get; init; } = new(new SimpleTokens(TimeSpan.FromMinutes(5)));

    /// <summary>The lease table, for the permission on a lease's keys (none: lease keys are not checked).</summary>
    public Lessor? LeaseTable { get; init; }

    /// <summary>This member's wall clock in Unix ms: only for token lifetimes, which are member-local.</summary>
    public Func<long> Clock { get; init; } = static () => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>
    /// Applies one entry. Whatever goes wrong applying a well-formed entry fails that request alone,
    /// the same way on every member: an exception takes back the entry's store writes and answers
    /// <see cref="EtcdError.ApplyFailed"/>. Only an entry of an unknown kind stops the member
    /// (<see cref="UnknownEntryException"/>).
    /// </summary>
    public ApplyResult Apply(JournalEntry entry)
    {
        store.CompactStep(); // a compaction in progress goes on by one step per entry, the same on every member
        // Request id 0: an entry not from a proposer (tools, tests), never retried.
        if (entry.RequestId != 0 && !AppliedRequests.TryAdd(entry.MemberId, entry.RequestId)) return ApplyResult.Fail(EtcdError.RepeatedEntry);
        try
        {
            // Checked here, against the auth state as of this entry, so every member decides alike.
            if (Auth.Enabled && CheckPermission(entry) is var denied && denied != EtcdError.None) return ApplyResult.Fail(denied);
            return Dispatch(entry);
        }
        catch (Exception ex) when (ex is not UnknownEntryException and not OutOfMemoryException)
        {
            return new ApplyResult(null, EtcdError.ApplyFailed, ex);
        }
    }

    /// <summary>
    /// The answer to an entry whose frame is sound but whose body does not parse (the same bytes on
    /// every member, so the same answer): it changes nothing and its request fails.
    /// </summary>
    public ApplyResult Unreadable(ulong memberId, ulong requestId, string problem)
    {
        store.CompactStep();
        if (requestId != 0 && !AppliedRequests.TryAdd(memberId, requestId)) return ApplyResult.Fail(EtcdError.RepeatedEntry);
        return new ApplyResult(null, EtcdError.ApplyFailed, new InvalidDataException(problem));
    }

    private ApplyResult Dispatch(JournalEntry entry)
    {
        if (MirrorSource is not null && ChangesKeyspace(entry.BodyCase)) return ApplyResult.Fail(EtcdError.MirrorReadOnly);
        switch (entry.BodyCase)
        {
            case JournalEntry.BodyOneofCase.MirrorRevisions:
                return MirrorSource is null ? ApplyResult.Fail(EtcdError.NotMirroring) : _mirror.Apply(entry.MirrorRevisions);
            case JournalEntry.BodyOneofCase.MirrorCutOver:
                if (MirrorSource is null) return ApplyResult.Fail(EtcdError.NotMirroring);
                var cutOver = _mirror.CutOver(entry.MirrorCutOver);
                MirrorSource = null;
                return cutOver;
            case JournalEntry.BodyOneofCase.Bootstrap:
                if (ClusterId == 0) ClusterId = entry.Bootstrap.ClusterId;
                return ApplyResult.Ok(new ResponseHeader { ClusterId = ClusterId });
            // While NOSPACE is raised, writes that add data are refused; reads and deletes go on
            // (etcd's capped applier). Deterministic: the alarm table is journaled state.
            case JournalEntry.BodyOneofCase.Put or JournalEntry.BodyOneofCase.LeaseGrant when NoSpace:
                return ApplyResult.Fail(EtcdError.NoSpace);
            case JournalEntry.BodyOneofCase.Txn when NoSpace && TxnExecutor.HasPut(entry.Txn):
                return ApplyResult.Fail(EtcdError.NoSpace);
            case JournalEntry.BodyOneofCase.Put:
                return Write(entry.Put, static (x, txn, req) => x.Put(txn, req, out var r) is var e && e != EtcdError.None ? ApplyResult.Fail(e) : ApplyResult.Ok(r!));
            case JournalEntry.BodyOneofCase.DeleteRange:
                return Write(entry.DeleteRange, static (_, txn, req) => ApplyResult.Ok(TxnExecutor.DeleteRange(txn, req)));
            case JournalEntry.BodyOneofCase.Txn:
                return Write(entry.Txn, static (x, txn, req) => x.Txn(txn, req, out var r) is var e && e != EtcdError.None ? ApplyResult.Fail(e) : ApplyResult.Ok(r!));
            case JournalEntry.BodyOneofCase.Compaction:
                return Compact(entry.Compaction);
            case JournalEntry.BodyOneofCase.MemberAnnounce:
                var announce = entry.MemberAnnounce.Clone();
                announce.Heartbeat = ++_heartbeats;
                _members[announce.MemberId] = announce;
                return ApplyResult.Ok(new ResponseHeader { ClusterId = ClusterId });
            case JournalEntry.BodyOneofCase.Alarm:
                return ApplyAlarm(entry.Alarm);
            case JournalEntry.BodyOneofCase.LeaseGrant:
                return leases.Grant(entry.LeaseGrant);
            case JournalEntry.BodyOneofCase.LeaseRevoke:
                return leases.Revoke(entry.LeaseRevoke);
            case JournalEntry.BodyOneofCase.LeaseRenew:
                return leases.Renew(entry.LeaseRenew);
            case JournalEntry.BodyOneofCase.LeaseExpire:
                return leases.Expire(entry.LeaseExpire);
            case JournalEntry.BodyOneofCase.Authenticate:
                var login = Auth.Authenticate(entry.Authenticate, Clock());
                if (login.Response is AuthenticateResponse token) token.Header.Revision = store.CurrentRevision;
                return login;
            case JournalEntry.BodyOneofCase.AuthEnable:
                return AuthChange(Auth.Enable(), new AuthEnableResponse());
            case JournalEntry.BodyOneofCase.AuthDisable:
                Auth.Disable();
                return AuthChange(EtcdError.None, new AuthDisableResponse());
            case JournalEntry.BodyOneofCase.UserAdd:
                return AuthChange(Auth.UserAdd(entry.UserAdd), new AuthUserAddResponse());
            case JournalEntry.BodyOneofCase.UserDelete:
                return AuthChange(Auth.UserDelete(entry.UserDelete), new AuthUserDeleteResponse());
            case JournalEntry.BodyOneofCase.UserChangePassword:
                return AuthChange(Auth.UserChangePassword(entry.UserChangePassword), new AuthUserChangePasswordResponse());
            case JournalEntry.BodyOneofCase.UserGrantRole:
                return AuthChange(Auth.UserGrantRole(entry.UserGrantRole), new AuthUserGrantRoleResponse());
            case JournalEntry.BodyOneofCase.UserRevokeRole:
                return AuthChange(Auth.UserRevokeRole(entry.UserRevokeRole), new AuthUserRevokeRoleResponse());
            case JournalEntry.BodyOneofCase.RoleAdd:
                return AuthChange(Auth.RoleAdd(entry.RoleAdd), new AuthRoleAddResponse());
            case JournalEntry.BodyOneofCase.RoleDelete:
                return AuthChange(Auth.RoleDelete(entry.RoleDelete), new AuthRoleDeleteResponse());
            case JournalEntry.BodyOneofCase.RoleGrantPermission:
                return AuthChange(Auth.RoleGrantPermission(entry.RoleGrantPermission), new AuthRoleGrantPermissionResponse());
            case JournalEntry.BodyOneofCase.RoleRevokePermission:
                return AuthChange(Auth.RoleRevokePermission(entry.RoleRevokePermission), new AuthRoleRevokePermissionResponse());
            default:
                // An entry this version does not know: fail-stop rather than skip it and diverge.
                throw new UnknownEntryException($"journal entry with unknown body {entry.BodyCase}");
        }
    }

    // What a mirror refuses before its cut-over: every change to keys, leases or auth that does not
    // come from its source (logins, member announcements and alarms go on).
    private static bool ChangesKeyspace(JournalEntry.BodyOneofCase kind) => kind is
        JournalEntry.BodyOneofCase.Put or JournalEntry.BodyOneofCase.DeleteRange or JournalEntry.BodyOneofCase.Txn
        or JournalEntry.BodyOneofCase.Compaction or JournalEntry.BodyOneofCase.LeaseGrant or JournalEntry.BodyOneofCase.LeaseRevoke
        or JournalEntry.BodyOneofCase.LeaseRenew or JournalEntry.BodyOneofCase.LeaseExpire || IsAuthChange(kind);

    // The user and role changes, which need an admin.
    private static bool IsAuthChange(JournalEntry.BodyOneofCase kind) => kind is
        JournalEntry.BodyOneofCase.AuthEnable or JournalEntry.BodyOneofCase.AuthDisable
        or JournalEntry.BodyOneofCase.UserAdd or JournalEntry.BodyOneofCase.UserDelete
        or JournalEntry.BodyOneofCase.UserChangePassword or JournalEntry.BodyOneofCase.UserGrantRole
        or JournalEntry.BodyOneofCase.UserRevokeRole or JournalEntry.BodyOneofCase.RoleAdd
        or JournalEntry.BodyOneofCase.RoleDelete or JournalEntry.BodyOneofCase.RoleGrantPermission
        or JournalEntry.BodyOneofCase.RoleRevokePermission;

    // etcd's authApplierV3: the permission each entry needs from the user it was made as.
    private EtcdError CheckPermission(JournalEntry entry)
    {
        string user = entry.AuthUser;
        return entry.BodyCase switch
        {
            JournalEntry.BodyOneofCase.Put => AuthChecks.Put(Auth, LeaseTable, user, entry.Put),
            JournalEntry.BodyOneofCase.DeleteRange => AuthChecks.DeleteRange(Auth, user, entry.DeleteRange),
            JournalEntry.BodyOneofCase.Txn => AuthChecks.Txn(Auth, LeaseTable, user, entry.Txn),
            JournalEntry.BodyOneofCase.LeaseRevoke => AuthChecks.LeaseKeys(Auth, LeaseTable, user, entry.LeaseRevoke.Id, write: true),
            var kind when IsAuthChange(kind) => Auth.CheckAdmin(user),
            _ => EtcdError.None,
        };
    }

    private ApplyResult AuthChange(EtcdError error, IMessage response)
    {
        if (error != EtcdError.None) return ApplyResult.Fail(error);
        var header = new ResponseHeader { Revision = store.CurrentRevision };
        response.Descriptor.FindFieldByName("header").Accessor.SetValue(response, header);
        return ApplyResult.Ok(response);
    }

    private ApplyResult Write<TRequest>(TRequest request, Func<TxnExecutor, MvccStore.MvccTxn, TRequest, ApplyResult> op)
    {
        var txn = store.Begin(writable: true);
        bool applied = false;
        try
        {
            var result = op(txns, txn, request);
            applied = true;
            return result;
        }
        finally
        {
            // A write cut short by an exception leaves nothing behind: no partial txn, no revision.
            if (!applied) txn.Abort();
            txn.End();
        }
    }

    // etcd's applier: ACTIVATE answers with the alarm raised, DEACTIVATE with the one cleared
    // (nothing when it was not active).
    private ApplyResult ApplyAlarm(AlarmRequest a)
    {
        var response = new AlarmResponse { Header = new ResponseHeader { Revision = store.CurrentRevision } };
        var key = (a.MemberID, a.Alarm);
        if (a.Action == AlarmRequest.Types.AlarmAction.Activate && a.Alarm != AlarmType.None)
        {
            if (!_alarms.TryGetValue(key, out var raised)) _alarms.Add(key, raised = new AlarmMember { MemberID = a.MemberID, Alarm = a.Alarm });
            response.Alarms.Add(raised);
        }
        else if (a.Action == AlarmRequest.Types.AlarmAction.Deactivate && _alarms.Remove(key, out var cleared))
        {
            response.Alarms.Add(cleared);
        }
        return ApplyResult.Ok(response);
    }

    // etcd: compacting at or below the last compaction is "compacted", above the head "future".
    private ApplyResult Compact(CompactionRequest c)
    {
        if (c.Revision <= store.CompactRevision) return ApplyResult.Fail(EtcdError.Compacted);
        if (c.Revision > store.CurrentRevision) return ApplyResult.Fail(EtcdError.FutureRevision);
        store.Compact(c.Revision);
        return ApplyResult.Ok(new CompactionResponse { Header = new ResponseHeader { Revision = store.CurrentRevision } });
    }
}
