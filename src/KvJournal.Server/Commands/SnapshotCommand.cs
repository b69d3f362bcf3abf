using System.Globalization;
using KvJournal.Storage.Bbolt;
using KvJournal.Storage.EtcdDb;

namespace KvJournal.Server.Commands;

/// <summary>
/// `kvjournal snapshot status FILE [-w simple|json]`: etcdutl's report of an etcd snapshot (what
/// `etcdctl snapshot save` wrote), with the same figures and the same output formats.
/// </summary>
public static class SnapshotCommand
{
    public const string Usage = """
        Usage:
          kvjournal snapshot status FILE [-w simple|json]   hash, revision, keys and size of an etcd snapshot, as etcdutl prints them
        """;

    public static int Run(string[] args)
    {
        if (args.Length < 1 || args[0] != "status") return Fail($"unknown snapshot command {(args.Length > 0 ? args[0] : "(none)")}\n{Usage}", 2);
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
