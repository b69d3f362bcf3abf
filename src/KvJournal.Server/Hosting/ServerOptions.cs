using System.Globalization;
using KvJournal.Journal.Nats;

namespace KvJournal.Server.Hosting;

/// <summary>
/// A member's configuration, from etcd's flags (same names, defaults and units) for what KvJournal
/// supports. Go's flag syntax: <c>--name value</c>, <c>--name=value</c>, one or two dashes.
/// </summary>
public sealed partial record ServerOptions
{
    public string Name { get; init; } = "default";
    /// <summary>etcd's default is "${name}.etcd" in the working directory.</summary>
    public string? DataDir { get; init; }
    public IReadOnlyList<Uri> ListenClientUrls { get; init; } = [new("http://localhost:2379")];
    public IReadOnlyList<Uri> AdvertiseClientUrls { get; init; } = [new("http://localhost:2379")];

    /// <summary>
    /// The peer URLs MemberList reports (etcd's default); members never dial them, since they meet
    /// only in the journal, but etcd clients and tools read them.
    /// </summary>
    public IReadOnlyList<Uri> AdvertisePeerUrls { get; init; } = [new("http://localhost:2380")];
    /// <summary>Largest request a client may send (etcd default 1.5 MiB).</summary>
    public int MaxRequestBytes { get; init; } = 1536 * 1024;
    /// <summary>Most operations in one txn branch (etcd default 128).</summary>
    public int MaxTxnOps { get; init; } = 128;
    /// <summary>Backend quota; 0 means etcd's default of 2 GiB.</summary>
    public long QuotaBackendBytes { get; init; }
    /// <summary>Server certificate and key (PEM) for https:// client URLs.</summary>
    public string? CertFile { get; init; }
    public string? KeyFile { get; init; }
    /// <summary>CA (PEM) that client certificates must chain to.</summary>
    public string? TrustedCaFile { get; init; }
    /// <summary>Require a client certificate signed by the trusted CA (mTLS).</summary>
    public bool ClientCertAuth { get; init; }

    /// <summary>Further keyspaces this process serves, each on its own client URLs (--shard NAME=URL[,URL…]).</summary>
    public IReadOnlyList<ShardSpec> Shards { get; init; } = [];
    /// <summary>Quotas of the further shards by name (--shard-quota-backend-bytes NAME=BYTES); others get the default quota.</summary>
    public IReadOnlyDictionary<string, long> ShardQuotas { get; init; } = new Dictionary<string, long>();
    /// <summary>Client writes per second a shard admits (none when absent): etcd's "too many requests" above it.</summary>
    public IReadOnlyDictionary<string, long> ShardWriteRates { get; init; } = new Dictionary<string, long>();
    /// <summary>Client writes a shard holds in flight at once (none when absent).</summary>
    public IReadOnlyDictionary<string, long> ShardMaxInFlightWrites { get; init; } = new Dictionary<string, long>();

    /// <summary>Extra plain-HTTP URLs serving only /metrics and the health endpoints.</summary>
    public IReadOnlyList<Uri> ListenMetricsUrls { get; init; } = [];
    /// <summary>etcd's auto-compaction: "periodic" (keep a duration of history) or "revision" (keep N revisions).</summary>
    public string AutoCompactionMode { get; init; } = "periodic";
    /// <summary>"0" (off), a duration for periodic ("1h", "30m"; a bare number means hours), a count for revision.</summary>
    public string AutoCompactionRetention { get; init; } = "0";
    public string LogLevel { get; init; } = "info";

    /// <summary>Where the member reported as leader writes each shard's backups (etcd snapshot files); null: no backups.</summary>
    public string? BackupDir { get; init; }
    public TimeSpan BackupInterval { get; init; } = TimeSpan.FromHours(1);
    /// <summary>Backups kept per shard; older ones are deleted.</summary>
    public int BackupRetention { get; init; } = 24;

    /// <summary>Applied entries between state snapshots stored in the journal (etcd's --snapshot-count); 0 = none.</summary>
    public long SnapshotCount { get; init; } = 100_000;

    /// <summary>
    /// Start on an embedded journal that lost or damaged acknowledged entries, going on with what
    /// can be read (the operator's way out of a refused start; acknowledged writes are lost).
    /// </summary>
    public bool UnsafeAcceptJournalLoss { get; init; }

    /// <summary>
    /// The journal this member shares with others: NATS servers (nats:// or tls://, several);
    /// empty = the embedded journal under --data-dir.
    /// </summary>
    public IReadOnlyList<Uri> JournalEndpoints { get; init; } = [];

    /// <summary>Whether the journal is NATS JetStream rather than embedded.</summary>
    public bool UsesNats => JournalEndpoints.Count > 0;

    /// <summary>Replicas each shard's JetStream stream must have (--journal-replicas).</summary>
    public int JournalReplicas { get; init; } = 3;

    /// <summary>How long writes and linearizable reads wait for the journal before "request timed out".</summary>
    public TimeSpan JournalRequestTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Credentials and TLS for the NATS servers.</summary>
    public string? JournalUser { get; init; }
    public string? JournalPasswordFile { get; init; }
    public string? JournalCaFile { get; init; }
    public string? JournalCertFile { get; init; }
    public string? JournalKeyFile { get; init; }

    /// <summary>etcd's --bcrypt-cost: the cost of new password hashes (bcrypt, as etcd's).</summary>
    public int BcryptCost { get; init; } = KvJournal.Storage.Auth.PasswordHash.DefaultCost;

    /// <summary>How long an auth token lives without use (etcd's --auth-token-ttl, seconds; default 300).</summary>
    public TimeSpan AuthTokenTtl { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>How often watchers that asked for progress notifications get one (etcd default 10 min).</summary>
    public TimeSpan WatchProgressNotifyInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Room etcd adds above the request limit for gRPC framing: the receive limit, and the size
    /// above which a watch response is fragmented.
    /// </summary>
    public const int GrpcOverheadBytes = 512 * 1024;

    public string EffectiveDataDir => DataDir ?? $"{Name}.etcd";

    /// <summary>How a member (or `kvjournal snapshot restore`) reaches the NATS journal the --journal-* flags name.</summary>
    public NatsJournalOptions NatsJournalOptions(ulong memberId) => new()
    {
        Servers = JournalEndpoints,
        Replicas = JournalReplicas,
        MemberId = memberId,
        MaxEntryBytes = MaxRequestBytes + 64 * 1024,
        RequestTimeout = JournalRequestTimeout,
        User = JournalUser,
        Password = JournalPasswordFile is { } file ? File.ReadAllText(file).TrimEnd('\r', '\n') : null,
        CaFile = JournalCaFile,
        CertFile = JournalCertFile,
        KeyFile = JournalKeyFile,
    };
    public long EffectiveQuotaBytes => QuotaBackendBytes > 0 ? QuotaBackendBytes : 2L * 1024 * 1024 * 1024;

    /// <summary>
    /// Parses the configuration as etcd reads it: a --config-file (YAML, keys named like the
    /// flags), then ETCD_* environment variables (ETCD_DATA_DIR for --data-dir), then the flags,
    /// each overriding the one before. Throws <see cref="ArgumentException"/> with a user-facing message.
    /// </summary>
    public static ServerOptions Parse(IReadOnlyList<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "");
        var flags = ReadFlags(args, FlagNames.Append("config-file").ToHashSet(), BooleanFlags);
        var o = new ServerOptions();
        string? configFile = flags.LastOrDefault(f => f.Name == "config-file").Value ?? environment.GetValueOrDefault("ETCD_CONFIG_FILE");
        if (configFile is not null)
        {
            foreach (var (name, value) in ConfigFile.Read(configFile)) o = o.Set(name, value, $"in {configFile}");
        }
        foreach (string name in FlagNames)
        {
            if (environment.TryGetValue("ETCD_" + name.ToUpperInvariant().Replace('-', '_'), out var value)) o = o.Set(name, value, "from the environment");
        }
        foreach (var (name, value) in flags)
        {
            if (name != "config-file") o = o.Set(name, value, null);
        }
        o.CheckTls();
        return o;
    }

    // Go's flag syntax: --name value, --name=value, one or two dashes; a boolean flag alone is true.
    internal static List<(string Name, string Value)> ReadFlags(IReadOnlyList<string> args, IReadOnlySet<string> known, IReadOnlySet<string> booleans)
    {
        var flags = new List<(string, string)>();
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith('-') || arg == "-" || arg == "--")
                throw new ArgumentException($"unexpected argument \"{arg}\"");
            string name = arg.TrimStart('-');
            string? value = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            if (!known.Contains(name)) throw new ArgumentException($"unknown flag: --{name}");
            if (value is null && booleans.Contains(name)) value = "true";
            if (value is null)
            {
                if (i + 1 >= args.Count) throw new ArgumentException($"flag needs an argument: --{name}");
                value = args[++i];
            }
            flags.Add((name, value));
        }
        return flags;
    }

    // A repeatable NAME=N flag: one shard's setting added to those given before.
    internal static Dictionary<string, long> ShardSetting(IReadOnlyDictionary<string, long> before, string flag, string value)
    {
        int eq = value.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0) throw new ArgumentException($"invalid value \"{value}\" for flag --{flag}: want NAME=N");
        return new Dictionary<string, long>(before) { [value[..eq]] = Number(flag, value[(eq + 1)..], 0, long.MaxValue) };
    }

    internal static long Number(string flag, string text, long min, long max)
    {
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n) || n < min || n > max)
            throw new ArgumentException($"invalid value \"{text}\" for flag --{flag}: want an integer in [{min}, {max}]");
        return n;
    }

    // Go's strconv.ParseBool.
    private static bool Bool(string flag, string value) => value switch
    {
        "true" or "1" or "t" or "T" or "TRUE" or "True" => true,
        "false" or "0" or "f" or "F" or "FALSE" or "False" => false,
        _ => throw new ArgumentException($"invalid boolean value \"{value}\" for flag --{flag}"),
    };

    /// <summary>Whether the listen URLs need TLS, and that the files for it were given.</summary>
    public bool UsesTls => ListenClientUrls.Concat(Shards.SelectMany(sh => sh.Urls)).Any(u => u.Scheme == "https");

    private void CheckTls()
    {
        var names = new HashSet<string> { "default" };
        foreach (var shard in Shards)
        {
            if (!names.Add(shard.Name)) throw new ArgumentException($"--shard {shard.Name}: the name is taken");
        }
        foreach (var (flag, settings) in new[] { ("shard-quota-backend-bytes", ShardQuotas), ("shard-write-rate", ShardWriteRates), ("shard-max-inflight-writes", ShardMaxInFlightWrites) })
        {
            foreach (var name in settings.Keys)
                if (name != "default" && !names.Contains(name)) throw new ArgumentException($"--{flag} names unknown shard \"{name}\"");
        }
        var ports = new HashSet<int>();
        foreach (var url in ListenClientUrls.Concat(Shards.SelectMany(sh => sh.Urls)).Concat(ListenMetricsUrls))
        {
            if (!ports.Add(url.Port)) throw new ArgumentException($"port {url.Port} is given to more than one listener");
        }
        if (UsesTls && (CertFile is null || KeyFile is null))
            throw new ArgumentException("https client URLs need --cert-file and --key-file");
        if (ListenMetricsUrls.Any(u => u.Scheme != "http"))
            throw new ArgumentException("--listen-metrics-urls takes http:// URLs");
        if (ClientCertAuth && TrustedCaFile is null)
            throw new ArgumentException("--client-cert-auth needs --trusted-ca-file");
        if (BackupInterval <= TimeSpan.Zero)
            throw new ArgumentException("--backup-interval must be above 0");
    }

    // Go's time.Duration syntax as etcd's flags take it: a sequence of number+unit ("10m", "1m30s", "500ms").
    /// <summary>The quota of the shard named <paramref name="name"/> ("default" for the main keyspace).</summary>
    public long QuotaOf(string name) =>
        ShardQuotas.TryGetValue(name, out long q) && q > 0 ? q : EffectiveQuotaBytes;

    internal static TimeSpan Duration(string flag, string text)
    {
        var rest = text.AsSpan();
        double totalMs = 0;
        if (rest.Length == 0) throw BadDuration(flag, text);
        if (rest.SequenceEqual("0")) return TimeSpan.Zero;
        while (rest.Length > 0)
        {
            int n = 0;
            while (n < rest.Length && (char.IsAsciiDigit(rest[n]) || rest[n] == '.')) n++;
            if (n == 0 || !double.TryParse(rest[..n], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double number))
                throw BadDuration(flag, text);
            rest = rest[n..];
            int u = 0;
            while (u < rest.Length && char.IsAsciiLetter(rest[u]) || u < rest.Length && rest[u] == 'µ') u++;
            double unitMs = rest[..u] switch
            {
                "h" => 3_600_000,
                "m" => 60_000,
                "s" => 1000,
                "ms" => 1,
                "us" or "µs" => 0.001,
                "ns" => 0.000001,
                _ => throw BadDuration(flag, text),
            };
            totalMs += number * unitMs;
            rest = rest[u..];
        }
        return TimeSpan.FromMilliseconds(totalMs);
    }

    private static ArgumentException BadDuration(string flag, string text) =>
        new($"invalid value \"{text}\" for flag --{flag}: want a duration such as 10m, 30s or 500ms");

    internal static Uri[] Urls(string flag, string text, params string[] schemes)
    {
        if (schemes.Length == 0) schemes = ["http", "https"];
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length == 0) throw new ArgumentException($"flag --{flag} needs at least one URL");
        var urls = new Uri[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!Uri.TryCreate(parts[i], UriKind.Absolute, out var u) || !schemes.Contains(u.Scheme) || u.IsDefaultPort && !parts[i].Contains(":" + u.Port, StringComparison.Ordinal))
                throw new ArgumentException($"invalid URL \"{parts[i]}\" for flag --{flag}: want {string.Join(" or ", schemes)}://host:port");
            urls[i] = u;
        }
        return urls;
    }
}

/// <summary>A further keyspace: its name and the client URLs it is served on.</summary>
public sealed record ShardSpec(string Name, IReadOnlyList<Uri> Urls)
{
    public static ShardSpec Parse(string value)
    {
        int eq = value.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0) throw new ArgumentException($"invalid value \"{value}\" for flag --shard: want NAME=URL[,URL…]");
        string name = value[..eq];
        if (!name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-'))
            throw new ArgumentException($"--shard {name}: a shard name is lower-case letters, digits and '-'");
        return new ShardSpec(name, ServerOptions.Urls("shard", value[(eq + 1)..]));
    }
}
