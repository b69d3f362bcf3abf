using System.Globalization;
using KvJournal.Journal.Embedded;
using KvJournal.Journal.Nats;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Bbolt;
using KvJournal.Storage.EtcdDb;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvJournal.Server.Commands;

/// <summary>
/// etcd snapshots (what `etcdctl snapshot save` wrote, a bbolt file) offline:
/// `kvjournal snapshot status FILE` reports it as etcdutl does; `kvjournal snapshot restore FILE
/// --data-dir DIR` makes a member's data directory that serves its keyspace at etcd's revisions.
/// </summary>
public static class SnapshotCommand
{
    public const string Usage = """
        Usage:
          kvjournal snapshot status FILE [-w simple|json]   hash, revision, keys and size of an etcd snapshot, as etcdutl prints them
          kvjournal snapshot restore FILE --data-dir DIR    a new member data dir holding the snapshot's keyspace, revisions, leases and users
          kvjournal snapshot restore FILE --journal-endpoints nats://...  the same into a new NATS journal, for every member on it
        """;

    public static Task<int> RunAsync(string[] args) => (args.Length > 0 ? args[0] : "") switch
    {
        "status" => Task.FromResult(Status(args)),
        "restore" => RestoreAsync(args),
        _ => Task.FromResult(Fail($"unknown snapshot command {(args.Length > 0 ? args[0] : "(none)")}\n{Usage}", 2)),
    };

    private static int Status(string[] args)
    {
        string? file = null, format = "simple";
        for (int i = 1; i < args.Length; i++)
        {
            if (args[i] is "-w" or "--write-out" && i + 1 < args.Length) format = args[++i];
            else if (args[i].StartsWith("--write-out=", StringComparison.Ordinal)) format = args[i]["--write-out=".Length..];
            else if (file is null && !args[i].StartsWith('-')) file = args[i];
            else return Fail($"unexpected argument {args[i]}\n{Usage}", 2);
        }
        if (file is null) return Fail($"snapshot status needs a snapshot file\n{Usage}", 2);
        if (format is not ("simple" or "json")) return Fail($"unsupported output format {format} (simple or json)", 2);
        EtcdDbStatus status;
        try
        {
            using var db = BboltFile.Open(file);
            status = EtcdDbStatus.Of(db);
        }
        catch (Exception ex) when (ex is BboltFormatException or IOException or UnauthorizedAccessException)
        {
            return Fail($"{file}: {ex.Message}", 1);
        }
        Console.Out.WriteLine(format == "json"
            ? $"{{\"hash\":{status.Hash},\"revision\":{status.Revision},\"totalKey\":{status.TotalKey},\"totalSize\":{status.TotalSize}}}"
            : $"{status.Hash:x}, {status.Revision}, {status.TotalKey}, {HumanBytes(status.TotalSize)}");
        return 0;
    }

    // restore FILE, then the member flags that say where its journal is: --data-dir (embedded) or --journal-endpoints (NATS).
    private static async Task<int> RestoreAsync(string[] args)
    {
        if (args.Length < 2 || args[1].StartsWith('-')) return Fail($"snapshot restore needs a snapshot file\n{Usage}", 2);
        string file = args[1];
        ServerOptions options;
        try
        {
            options = ServerOptions.Parse(args[2..]);
        }
        catch (ArgumentException ex)
        {
            return Fail($"{ex.Message}\n{Usage}", 2);
        }
        if (!options.UsesNats && options.DataDir is null) return Fail($"snapshot restore needs --data-dir (or --journal-endpoints for a NATS journal)\n{Usage}", 2);
        string dataDir = options.EffectiveDataDir;
        // As etcdutl: never over an existing member.
        if (!options.UsesNats && Directory.Exists(dataDir) && Directory.EnumerateFileSystemEntries(dataDir).Any()) return Fail($"data-dir {dataDir} exists and is not empty", 1);
        bool made = !options.UsesNats && !Directory.Exists(dataDir);
        try
        {
            var summary = await ImportAsync(file, options, mirrorOf: null).ConfigureAwait(false);
            string into = options.UsesNats ? $"NATS stream {NatsJournal.StreamName("default")}" : dataDir;
            Console.Out.WriteLine($"restored {file} into {into}: revision {summary.Revision} (compacted at {summary.CompactRevision}), " +
                $"{summary.Keys} keys in {summary.Versions} versions, {summary.Leases} leases, {summary.Users} users, {summary.Roles} roles, auth {(summary.AuthEnabled ? "enabled" : "disabled")}");
            return 0;
        }
        catch (Exception ex) when (ex is BboltFormatException or IOException or UnauthorizedAccessException or InvalidOperationException or KvJournal.Journal.JournalUnavailableException)
        {
            // Nothing half-made is left to start a member on.
            if (made && Directory.Exists(dataDir)) Directory.Delete(dataDir, recursive: true);
            return Fail($"{file}: {ex.Message}", 1);
        }
    }

    /// <summary>
    /// Imports etcd database <paramref name="file"/> as the state the journal's members start from:
    /// into the data dir's new embedded journal, or the new NATS stream of the default keyspace.
    /// </summary>
    internal static async Task<EtcdDbImport.Summary> ImportAsync(string file, ServerOptions options, string? mirrorOf)
    {
        string scratch = Path.Combine(Path.GetTempPath(), $"kvjournal-import-{Guid.NewGuid():N}.state");
        using var db = BboltFile.Open(file);
        var output = new FileStream(scratch, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
        await using (output.ConfigureAwait(false))
        {
            var summary = EtcdDbImport.Write(db, output, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), mirrorOf);
            output.Position = 0;
            if (options.UsesNats)
            {
                var journal = await NatsJournal.OpenAsync(options.NatsJournalOptions(0), "default", NullLogger.Instance, CancellationToken.None).ConfigureAwait(false);
                await using (journal.ConfigureAwait(false))
                    await journal.PutImportedStateAsync(output, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                await FasterLogJournal.PutImportedStateAsync(Path.Combine(options.EffectiveDataDir, "journal"), output, CancellationToken.None).ConfigureAwait(false);
            }
            return summary;
        }
    }

    private static int Fail(string message, int code)
    {
        Console.Error.WriteLine($"kvjournal: {message}");
        return code;
    }

    /// <summary>Bytes in SI units as etcdutl prints them (go-humanize: "205 kB", "2.1 MB", "812 B").</summary>
    public static string HumanBytes(long bytes)
    {
        if (bytes < 10) return $"{bytes} B";
        string[] units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
        int e = (int)Math.Floor(Math.Log(bytes) / Math.Log(1000));
        double value = Math.Floor(bytes / Math.Pow(1000, e) * 10 + 0.5) / 10;
        return string.Format(CultureInfo.InvariantCulture, value < 10 ? "{0:0.0} {1}" : "{0:0} {1}", value, units[e]);
    }
}
