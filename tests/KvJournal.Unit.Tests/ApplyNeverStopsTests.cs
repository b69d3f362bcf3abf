using Authpb;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Member.Face;
using KvJournal.Member.Propose;
using KvJournal.Protos.Journal;
using KvJournal.Storage.Apply;
using KvJournal.Storage.Auth;
using KvJournal.Storage.Lease;
using KvJournal.Storage.Mvcc;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// Properties of the path every write takes (validation → entry encoding → decoding → apply),
/// over random requests of every kind, valid and invalid, with a fixed seed (a failure names it):
/// whatever validation admits decodes and applies, no entry read back makes the applier throw,
/// and two members applying the same entries agree on every answer and on the state.
/// </summary>
public sealed class ApplyNeverStopsTests
{
    private const int Seed = 20261201;

    /// <summary>Two members' appliers over their own stores: what each entry is applied to.</summary>
    private sealed class Member
    {
        public MvccStore Store { get; } = new();
        public KvApplier Applier { get; }
        public Lessor Leases { get; } = new();

        public Member()
        {
            Store.LeaseTracker = Leases;
            Applier = new KvApplier(Store, new TxnExecutor(Leases), new LeaseExecutor(Store, Leases))
            {
                Auth = new AuthStore(new SimpleTokens(TimeSpan.FromMinutes(5))),
                LeaseTable = Leases,
                Clock = static () => 1_000_000,
            };
        }

        // What the tailer does with an entry read back, minus the journal.
        public ApplyResult Apply(byte[] bytes)
        {
            var decoded = JournalEntryCodec.Decode(bytes);
            Assert.NotEqual(EntryStatus.Damaged, decoded.Status);
            return decoded.Status == EntryStatus.Ok
                ? Applier.Apply(decoded.Entry!)
                : Applier.Unreadable(decoded.MemberId, decoded.RequestId, decoded.Problem!);
        }

        public string State() => $"rev {Store.CurrentRevision} compact {Store.CompactRevision} keys {Store.KeyCount} size {Store.SizeBytes} hash {Store.HashKv(Store.CurrentRevision):x8} " +
            $"leases {Leases.All.Count()} auth {Applier.Auth.Enabled}/{Applier.Auth.Revision} alarms {Applier.Alarms.Count}";
    }

    [Fact]
    public void RandomRequestsOfEveryKindNeverStopTheApplierAndApplyAlikeOnTwoMembers()
    {
        var random = new Random(Seed);
        var gen = new RequestGenerator(random);
        var a = new Member();
        var b = new Member();
        int admitted = 0, refused = 0;
        ulong requestId = 0;
        for (int i = 0; i < 20_000; i++)
        {
            var entry = gen.Entry(out var validation);
            entry.MemberId = 1;
            entry.RequestId = ++requestId;
            if (validation != EtcdError.None)
            {
                refused++;
                // Refused at the edge, never proposed: but even proposed it must not stop a member.
                if (random.Next(4) != 0) continue;
            }
            else admitted++;
            byte[] bytes = JournalEntryCodec.Encode(entry);
            var decoded = JournalEntryCodec.Decode(bytes);
            if (validation == EtcdError.None) Assert.True(decoded.Status == EntryStatus.Ok, $"seed {Seed} step {i}: an admitted entry did not decode: {decoded.Problem}");
            ApplyResult ra, rb;
            try
            {
                ra = a.Apply(bytes);
                rb = b.Apply(bytes);
            }
            catch (Exception ex)
            {
                Assert.Fail($"seed {Seed} step {i}: applying {entry} threw {ex}");
                throw;
            }
            Assert.True(ra.Error == rb.Error && Equals(ra.Response, rb.Response), $"seed {Seed} step {i}: members answered {ra.Error}/{ra.Response} and {rb.Error}/{rb.Response} to {entry}");
            if (i % 500 == 0) Assert.Equal(a.State(), b.State());
        }
        Assert.Equal(a.State(), b.State());
        // The generator reaches both sides of validation, and writes happened.
        Assert.True(admitted > 5_000 && refused > 1_000, $"admitted {admitted}, refused {refused}");
        Assert.True(a.Store.CurrentRevision > 1_000, a.State());
    }

    [Fact]
    public void RandomAndMutatedBytesNeverThrowFromTheDecodersOrTheApplier()
    {
        var random = new Random(Seed + 1);
        var gen = new RequestGenerator(random);
        var member = new Member();
        var parsers = new MessageParser[]
        {
            PutRequest.Parser, RangeRequest.Parser, DeleteRangeRequest.Parser, TxnRequest.Parser, CompactionRequest.Parser,
            LeaseGrantRequest.Parser, LeaseRevokeRequest.Parser, LeaseKeepAliveRequest.Parser, WatchRequest.Parser,
            AuthUserAddRequest.Parser, AuthRoleGrantPermissionRequest.Parser, AlarmRequest.Parser, JournalEntry.Parser,
        };
        for (int i = 0; i < 30_000; i++)
        {
            byte[] bytes = JournalEntryCodec.Encode(gen.Entry(out _));
            // Mutations: a flipped byte, a cut, random bytes, or a mutated body under a recomputed checksum.
            switch (random.Next(4))
            {
                case 0: bytes[random.Next(bytes.Length)] ^= (byte)(1 + random.Next(255)); break;
                case 1: bytes = bytes[..random.Next(bytes.Length)]; break;
                case 2: bytes = RandomBytes(random, random.Next(64)); break;
                default:
                    if (bytes.Length > 21) bytes[21 + random.Next(bytes.Length - 21)] = (byte)random.Next(256);
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(1), KvJournal.Crc32C.Of(bytes.AsSpan(5)));
                    break;
            }
            var decoded = JournalEntryCodec.Decode(bytes);
            if (decoded.Status == EntryStatus.Ok)
            {
                try
                {
                    member.Applier.Apply(decoded.Entry!);
                }
                catch (UnknownEntryException)
                {
                    // a body of no known kind: the one entry that stops a member, by design
                }
            }
            // The wire's request parsers fail only with the protobuf exception the gRPC layer maps.
            var body = bytes.Length > 21 ? bytes.AsSpan(21).ToArray() : bytes;
            foreach (var parser in parsers)
            {
                try
                {
                    parser.ParseFrom(body);
                }
                catch (InvalidProtocolBufferException)
                {
                }
            }
        }
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>Random requests of every kind an entry carries, biased towards a few keys, leases and users so they interact.</summary>
    private sealed class RequestGenerator(Random random)
    {
        private static readonly string[] Users = ["root", "alice", "bob", ""];
        private static readonly string[] Roles = ["root", "apps", "ro", ""];

        private ByteString Key() => random.Next(20) switch
        {
            0 => ByteString.Empty,
            1 => ByteString.CopyFrom(0),
            2 => ByteString.CopyFrom(RandomBytes(random, random.Next(1, 40))),
            _ => ByteString.CopyFromUtf8($"/k/{random.Next(30)}"),
        };

        private ByteString RangeEnd() => random.Next(6) switch
        {
            0 => ByteString.CopyFrom(0),
            1 => ByteString.CopyFromUtf8("/l"),
            2 => Key(),
            _ => ByteString.Empty,
        };

        private long Lease() => random.Next(5) == 0 ? random.Next(1, 8) : 0;

        private long Revision() => random.Next(6) switch
        {
            0 => -random.Next(1, 5),
            1 => long.MaxValue,
            _ => random.Next(0, 2000),
        };

        private PutRequest Put() => new()
        {
            Key = Key(),
            Value = ByteString.CopyFrom(RandomBytes(random, random.Next(0, 100))),
            Lease = Lease(),
            PrevKv = random.Next(2) == 0,
            IgnoreValue = random.Next(10) == 0,
            IgnoreLease = random.Next(10) == 0,
        };

        private RangeRequest Range() => new()
        {
            Key = Key(),
            RangeEnd = RangeEnd(),
            Limit = random.Next(4) == 0 ? random.Next(-2, 5) : 0,
            Revision = random.Next(3) == 0 ? Revision() : 0,
            SortOrder = (RangeRequest.Types.SortOrder)random.Next(4),
            SortTarget = (RangeRequest.Types.SortTarget)random.Next(6),
            KeysOnly = random.Next(3) == 0,
            CountOnly = random.Next(5) == 0,
            MinModRevision = random.Next(5) == 0 ? Revision() : 0,
            MaxCreateRevision = random.Next(5) == 0 ? Revision() : 0,
        };

        private DeleteRangeRequest Delete() => new() { Key = Key(), RangeEnd = RangeEnd(), PrevKv = random.Next(2) == 0 };

        private Compare Compare()
        {
            var c = new Compare { Key = Key(), RangeEnd = random.Next(4) == 0 ? RangeEnd() : ByteString.Empty, Result = (Compare.Types.CompareResult)random.Next(5), Target = (Compare.Types.CompareTarget)random.Next(6) };
            switch (random.Next(5))
            {
                case 0: c.Version = random.Next(-1, 5); break;
                case 1: c.CreateRevision = Revision(); break;
                case 2: c.ModRevision = Revision(); break;
                case 3: c.Value = ByteString.CopyFromUtf8("v"); break;
                default: c.Lease = Lease(); break;
            }
            return c;
        }

        private RequestOp Op(int depth) => random.Next(depth > 3 ? 3 : 5) switch
        {
            0 => new RequestOp { RequestPut = Put() },
            1 => new RequestOp { RequestRange = Range() },
            2 => new RequestOp { RequestDeleteRange = Delete() },
            3 => new RequestOp { RequestTxn = Txn(depth + 1) },
            _ => random.Next(10) == 0 ? new RequestOp() : new RequestOp { RequestPut = Put() },
        };

        private TxnRequest Txn(int depth)
        {
            var t = new TxnRequest();
            for (int i = random.Next(4); i > 0; i--) t.Compare.Add(Compare());
            for (int i = random.Next(4); i > 0; i--) t.Success.Add(Op(depth));
            for (int i = random.Next(3); i > 0; i--) t.Failure.Add(Op(depth));
            return t;
        }

        // A chain of txns around one op, at depths either side of the limit.
        private TxnRequest DeepTxn()
        {
            int depth = random.Next(JournalEntryCodec.MaxTxnDepth - 2, JournalEntryCodec.MaxTxnDepth + 3);
            var t = new TxnRequest { Success = { new RequestOp { RequestPut = Put() } } };
            for (int i = 1; i < depth; i++) t = new TxnRequest { Success = { new RequestOp { RequestTxn = t } }, Compare = { Compare() } };
            return t;
        }

        private Permission Permission() => new() { PermType = (Permission.Types.Type)random.Next(3), Key = Key(), RangeEnd = RangeEnd() };

        private string User() => Users[random.Next(Users.Length)];

        private string Role() => Roles[random.Next(Roles.Length)];

        /// <summary>A random entry and the verdict validation gives its request (None where the wire has no check).</summary>
        public JournalEntry Entry(out EtcdError validation)
        {
            validation = EtcdError.None;
            var e = new JournalEntry { AuthUser = random.Next(3) == 0 ? User() : "" };
            switch (random.Next(24))
            {
                case < 5: e.Put = Put(); validation = RequestValidator.Put(e.Put); break;
                case < 7: e.DeleteRange = Delete(); validation = RequestValidator.DeleteRange(e.DeleteRange); break;
                case < 11: e.Txn = Txn(1); validation = RequestValidator.Txn(e.Txn, 128); break;
                case 11: e.Txn = DeepTxn(); validation = RequestValidator.Txn(e.Txn, 128); break;
                case 12: e.Compaction = new CompactionRequest { Revision = Revision(), Physical = random.Next(2) == 0 }; break;
                case 13: e.LeaseGrant = new LeaseGrant { Id = random.Next(0, 8), TtlSeconds = random.Next(-5, 100), AtUnixMs = random.Next(0, 2_000_000) }; break;
                case 14: e.LeaseRevoke = new LeaseRevoke { Id = random.Next(-1, 8) }; break;
                case 15: e.LeaseRenew = new LeaseRenew { Ids = { random.Next(0, 8), random.Next(0, 8) }, AtUnixMs = random.Next(0, 2_000_000) }; break;
                case 16: e.LeaseExpire = new LeaseExpire { Id = random.Next(0, 8), AtUnixMs = random.Next(0, 4_000_000) }; break;
                case 17: e.Alarm = new AlarmRequest { Action = (AlarmRequest.Types.AlarmAction)(random.Next(6) is var a && a > 3 ? 2 : a), MemberID = (ulong)random.Next(3), Alarm = (AlarmType)random.Next(4) }; break;
                case 18: e.MemberAnnounce = new MemberAnnounce { MemberId = (ulong)random.Next(1, 4), Name = "m", ClientUrls = { "http://127.0.0.1:1" } }; break;
                case 19: e.Bootstrap = new Bootstrap { ClusterId = (ulong)random.Next(0, 3) }; break;
                case 20:
                    e.Authenticate = new Authenticate { Name = User(), Token = $"t{random.Next(5)}", CheckedRevision = (ulong)random.Next(0, 30), AtUnixMs = random.Next(0, 2_000_000) };
                    break;
                case 21:
                    // Mostly off, so that writes by users without permissions still happen.
                    if (random.Next(4) == 0) e.AuthEnable = new AuthEnableRequest();
                    else e.AuthDisable = new AuthDisableRequest();
                    break;
                case 22:
                    switch (random.Next(4))
                    {
                        case 0: e.UserAdd = new AuthUserAddRequest { Name = User(), HashedPassword = "h", Options = new UserAddOptions { NoPassword = random.Next(4) == 0 } }; break;
                        case 1: e.UserDelete = new AuthUserDeleteRequest { Name = User() }; break;
                        case 2: e.UserGrantRole = new AuthUserGrantRoleRequest { User = User(), Role = Role() }; break;
                        default: e.UserRevokeRole = new AuthUserRevokeRoleRequest { Name = User(), Role = Role() }; break;
                    }
                    break;
                default:
                    switch (random.Next(4))
                    {
                        case 0: e.RoleAdd = new AuthRoleAddRequest { Name = Role() }; break;
                        case 1: e.RoleDelete = new AuthRoleDeleteRequest { Role = Role() }; break;
                        case 2: e.RoleGrantPermission = new AuthRoleGrantPermissionRequest { Name = Role(), Perm = Permission() }; break;
                        default: e.RoleRevokePermission = new AuthRoleRevokePermissionRequest { Role = Role(), Key = Key(), RangeEnd = RangeEnd() }; break;
                    }
                    break;
            }
            return e;
        }
    }
}
