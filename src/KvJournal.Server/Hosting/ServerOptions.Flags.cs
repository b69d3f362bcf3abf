using System.Collections.Frozen;
using System.Text;

namespace KvJournal.Server.Hosting;

// Every setting declared once: its name (the flag, the config file key and the ETCD_* variable),
// what it takes, its help line and how it sets the options. Usage, the known names and the boolean
// flags all come from this table.
public sealed partial record ServerOptions
{
    /// <summary>One setting. <see cref="Help"/> null: accepted but not listed (an alias).</summary>
    private sealed record Flag(string Name, string Arg, string? Help, Func<ServerOptions, string, string, ServerOptions> Set, bool Boolean = false);

    private static readonly ServerOptions Defaults = new();

    private static readonly Flag[] Table =
    [
        new("name", "NAME", $"human-readable name of this member (default \"{Defaults.Name}\")", (o, _, v) => o with { Name = v }),
        new("data-dir", "DIR", "path to the data directory (default \"${name}.etcd\")", (o, _, v) => o with { DataDir = v }),
        new("listen-client-urls", "URLS", $"comma-separated URLs to serve clients on (default \"{Defaults.ListenClientUrls[0].GetLeftPart(UriPartial.Authority)}\")",
            (o, n, v) => o with { ListenClientUrls = Urls(n, v) }),
        new("advertise-client-urls", "URLS", $"comma-separated client URLs to advertise (default \"{Defaults.AdvertiseClientUrls[0].GetLeftPart(UriPartial.Authority)}\")",
            (o, n, v) => o with { AdvertiseClientUrls = Urls(n, v) }),
        new("initial-advertise-peer-urls", "URLS", $"peer URLs MemberList reports (default \"{Defaults.AdvertisePeerUrls[0].GetLeftPart(UriPartial.Authority)}\";\nmembers meet only in the journal and never dial them)",
            (o, n, v) => o with { AdvertisePeerUrls = Urls(n, v) }),
        new("max-request-bytes", "N", $"maximum client request size in bytes (default {Defaults.MaxRequestBytes})",
            (o, n, v) => o with { MaxRequestBytes = (int)Number(n, v, 1, int.MaxValue - 1024 * 1024) }),
        new("max-txn-ops", "N", $"maximum operations in one txn request (default {Defaults.MaxTxnOps})", (o, n, v) => o with { MaxTxnOps = (int)Number(n, v, 1, int.MaxValue) }),
        new("quota-backend-bytes", "N", "raise an alarm when the keyspace exceeds N bytes (default 0 = 2 GiB)", (o, n, v) => o with { QuotaBackendBytes = Number(n, v, 0, long.MaxValue) }),
        new("watch-progress-notify-interval", "D", $"period of progress notifications to watchers that ask (default {Defaults.WatchProgressNotifyInterval.TotalMinutes:0}m)",
            (o, n, v) => o with { WatchProgressNotifyInterval = Duration(n, v) }),
        // etcd 3.5 spells it with the experimental- prefix; both are accepted.
        new("experimental-watch-progress-notify-interval", "D", null, (o, n, v) => o with { WatchProgressNotifyInterval = Duration(n, v) }),
        new("cert-file", "FILE", "server TLS certificate (PEM) for https:// client URLs", (o, _, v) => o with { CertFile = v }),
        new("key-file", "FILE", "its private key (PEM)", (o, _, v) => o with { KeyFile = v }),
        new("trusted-ca-file", "FILE", "CA bundle (PEM) client certificates must chain to", (o, _, v) => o with { TrustedCaFile = v }),
        new("client-cert-auth", "", "require a client certificate signed by the trusted CA", (o, n, v) => o with { ClientCertAuth = Bool(n, v) }, Boolean: true),
        new("listen-metrics-urls", "URLS", "extra http:// URLs serving /metrics and /health only", (o, n, v) => o with { ListenMetricsUrls = Urls(n, v) }),
        new("auto-compaction-mode", "MODE", $"periodic or revision (default {Defaults.AutoCompactionMode})", (o, n, v) => o with
        {
            AutoCompactionMode = v is "periodic" or "revision" ? v : throw new ArgumentException($"invalid value \"{v}\" for flag --{n}: want periodic or revision"),
        }),
        new("auto-compaction-retention", "R", "history to keep: a duration (\"1h\"; a bare number is hours) for\nperiodic, a number of revisions for revision (default 0 = off)",
            (o, _, v) => o with { AutoCompactionRetention = v }),
        new("journal-endpoints", "URLS", "the journal to share with other members: NATS servers\n(nats://host:port,...; JetStream, replicated); without it\nthe journal is embedded under --data-dir",
            (o, n, v) => o with { JournalEndpoints = Urls(n, v, "nats", "tls") }),
        new("journal-replicas", "N", $"replicas of each shard's JetStream stream (default {Defaults.JournalReplicas})", (o, n, v) => o with { JournalReplicas = (int)Number(n, v, 1, 5) }),
        new("journal-request-timeout", "D", $"how long writes and linearizable reads wait for the journal\n(default {Defaults.JournalRequestTimeout.TotalSeconds:0}s; a NATS leader election after a crash takes 4-9 s)",
            (o, n, v) => o with { JournalRequestTimeout = Duration(n, v) }),
        new("journal-user", "NAME", "NATS user; --journal-password-file FILE holds its password", (o, _, v) => o with { JournalUser = v }),
        new("journal-password-file", "FILE", null, (o, _, v) => o with { JournalPasswordFile = v }),
        new("journal-cacert", "FILE", "CA of the NATS servers' certificates (TLS)", (o, _, v) => o with { JournalCaFile = v }),
        new("journal-cert", "FILE", "this member's certificate for NATS (mutual TLS), with --journal-key FILE", (o, _, v) => o with { JournalCertFile = v }),
        new("journal-key", "FILE", null, (o, _, v) => o with { JournalKeyFile = v }),
        new("backup-dir", "DIR", "write a point-in-time backup of each shard here (etcd snapshot files, which\netcdutl and kvjournal snapshot restore take); on the member reported as leader", (o, _, v) => o with { BackupDir = v }),
        new("backup-interval", "DURATION", "time between backups (default 1h)", (o, n, v) => o with { BackupInterval = Duration(n, v) }),
        new("backup-retention", "N", "backups kept per shard, the oldest deleted beyond it (default 24)", (o, n, v) => o with { BackupRetention = (int)Number(n, v, 1, 100_000) }),
        new("snapshot-count", "N", $"applied entries between state snapshots kept with the journal, which\nnew and restarting members start from (default {Defaults.SnapshotCount}; 0 = none)",
            (o, n, v) => o with { SnapshotCount = Number(n, v, 0, long.MaxValue) }),
        new("unsafe-accept-journal-loss", "", "start even though the embedded journal lost or damaged acknowledged\nentries (refused otherwise), going on with those that can be read",
            (o, n, v) => o with { UnsafeAcceptJournalLoss = Bool(n, v) }, Boolean: true),
        // Repeatable: each occurrence adds a shard or a shard's quota.
        new("shard", "NAME=URLS", "serve a further keyspace NAME on URLS (repeatable)", (o, _, v) => o with { Shards = [.. o.Shards, ShardSpec.Parse(v)] }),
        new("shard-quota-backend-bytes", "NAME=N", "that shard's quota (repeatable; default: --quota-backend-bytes)", (o, n, v) => o with { ShardQuotas = ShardSetting(o.ShardQuotas, n, v) }),
        new("shard-write-rate", "NAME=N", "client writes per second that shard admits, refused with \"too many requests\"\nabove it (repeatable; NAME default is the main keyspace; default: no limit)", (o, n, v) => o with { ShardWriteRates = ShardSetting(o.ShardWriteRates, n, v) }),
        new("shard-max-inflight-writes", "NAME=N", "client writes that shard holds in flight at once (repeatable; default: no limit)", (o, n, v) => o with { ShardMaxInFlightWrites = ShardSetting(o.ShardMaxInFlightWrites, n, v) }),
        // etcd's "simple,..." options (none of which change simple tokens) are accepted; JWT is not served.
        new("auth-token", "TYPE", "auth token type; only \"simple\" (the default) is served", (o, n, v) => v == "simple" || v.StartsWith("simple,", StringComparison.Ordinal)
            ? o
            : throw new ArgumentException($"invalid value \"{v}\" for flag --{n}: KvJournal serves simple tokens only")),
        new("auth-token-ttl", "N", $"seconds an unused simple token stays valid (default {Defaults.AuthTokenTtl.TotalSeconds:0})",
            (o, n, v) => o with { AuthTokenTtl = TimeSpan.FromSeconds(Number(n, v, 1, int.MaxValue)) }),
        new("bcrypt-cost", "N", "bcrypt cost of new password hashes (default 10)", (o, n, v) => o with { BcryptCost = (int)Number(n, v, 4, 31) }),
        new("log-level", "LEVEL", $"debug, info, warn, error, panic or fatal (default {Defaults.LogLevel})", (o, n, v) => o with
        {
            LogLevel = v is "debug" or "info" or "warn" or "error" or "panic" or "fatal" ? v : throw new ArgumentException($"invalid value \"{v}\" for flag --{n}: want debug, info, warn, error, panic or fatal"),
        }),
    ];

    private static readonly FrozenDictionary<string, Flag> ByName = Table.ToFrozenDictionary(f => f.Name);

    /// <summary>Every setting's name (a flag, a config file key, an ETCD_* variable).</summary>
    public static readonly string[] FlagNames = [.. Table.Select(f => f.Name)];

    private static readonly HashSet<string> BooleanFlags = [.. Table.Where(f => f.Boolean).Select(f => f.Name)];

    private ServerOptions Set(string name, string value, string? where) =>
        ByName.TryGetValue(name, out var flag)
            ? flag.Set(this, name, value)
            : throw new ArgumentException(where is null ? $"unknown flag: --{name}" : $"unknown setting \"{name}\" {where}");

    /// <summary>`kvjournal --help`.</summary>
    public static string Usage { get; } = BuildUsage();

    private static string BuildUsage()
    {
        const int HelpColumn = 34, MoreColumn = 42; // where help starts, and where its further lines do
        var text = new StringBuilder();
        text.AppendLine("Usage: kvjournal [flags]");
        text.AppendLine();
        text.AppendLine("Starts a KvJournal member: an etcd v3 API server whose writes are durable in a journal.");
        text.AppendLine();
        void Line(string flag, string help)
        {
            string[] lines = help.Split('\n');
            string head = "  " + flag;
            text.Append(head.Length < HelpColumn ? head.PadRight(HelpColumn) : head + "   ").AppendLine(lines[0]);
            foreach (string more in lines.Skip(1)) text.Append(' ', MoreColumn).AppendLine(more);
        }
        foreach (var f in Table)
            if (f.Help is not null) Line(f.Arg.Length == 0 ? $"--{f.Name}" : $"--{f.Name} {f.Arg}", f.Help);
        Line("--config-file FILE", "YAML file with the settings above, keys named like the flags");
        Line("--help", "show this help");
        Line("--version", "print the version and exit");
        text.AppendLine();
        text.AppendLine("Every setting can also come from the environment as ETCD_<NAME> (ETCD_DATA_DIR for --data-dir);");
        text.AppendLine("flags override the environment, which overrides the config file.");
        return text.ToString();
    }
}
