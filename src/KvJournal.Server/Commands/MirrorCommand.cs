using KvJournal.Journal.Embedded;
using KvJournal.Journal.Nats;
using KvJournal.Member.Mirror;
using KvJournal.Server.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvJournal.Server.Commands;

/// <summary>
/// `kvjournal mirror --from URL [member flags]`: a member whose keyspace is an exact copy of a
/// running etcd cluster, revision for revision, for a cut-over without downtime. On a new journal it
/// first imports the source's snapshot (Maintenance.Snapshot, as `etcdctl snapshot save`); on a
/// journal it mirrored before it resumes from its own revision. Clients may read it; writes are
/// refused until `POST /mirror/cut-over?revision=N` on its client port.
/// </summary>
public static class MirrorCommand
{
    public const string Usage = """
        Usage: kvjournal mirror --from URL [--from-user NAME:PASSWORD] [--from-cacert FILE] [--from-cert FILE --from-key FILE] [member flags]
          --from URL         the etcd cluster to mirror (one client URL: http://, https://, or host:port as etcdctl takes)
          --from-user        a user of the source (etcdctl's --user); root when auth is on, for its snapshot
          --from-cacert      CA bundle that signed the source's server certificate
          --from-cert/-key   a client certificate for a source that requires one
        Then, once the source takes no more writes (or at a revision it reached):
          curl -X POST 'http://MEMBER:2379/mirror/cut-over?revision=N'   checks every key at N and opens writes
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        EtcdSourceOptions source;
        ServerOptions options;
        try
        {
            (source, var memberArgs) = ParseSource(args);
            options = ServerOptions.Parse(memberArgs);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"kvjournal: {ex.Message}\n{Usage}");
            return 2;
        }
        if (options.Shards.Count > 0)
        {
            Console.Error.WriteLine("kvjournal: a mirror holds the default keyspace only; start it without --shard");
            return 2;
        }
        try
        {
            if (await IsNewJournalAsync(options).ConfigureAwait(false)) await ImportSourceAsync(source, options).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is Grpc.Core.RpcException or IOException or InvalidDataException or InvalidOperationException or UnauthorizedAccessException
            or Storage.Bbolt.BboltFormatException or KvJournal.Journal.JournalUnavailableException)
        {
            Console.Error.WriteLine($"kvjournal: cannot start the mirror of {source.Endpoint}: {ex.Message}");
            return 1;
        }
        return await Program.RunMemberAsync(options, source).ConfigureAwait(false);
    }

    private static async Task<bool> IsNewJournalAsync(ServerOptions options)
    {
        if (!options.UsesNats) return FasterLogJournal.IsNew(Path.Combine(options.EffectiveDataDir, "journal"));
        var journal = await NatsJournal.OpenAsync(options.NatsJournalOptions(0), "default", NullLogger.Instance, CancellationToken.None).ConfigureAwait(false);
        await using (journal.ConfigureAwait(false))
            return await journal.IsNewAsync(CancellationToken.None).ConfigureAwait(false);
    }

    // The source's snapshot, saved and checked as etcdctl does, then imported as a mirror of it.
    private static async Task ImportSourceAsync(EtcdSourceOptions options, ServerOptions member)
    {
        string file = Path.Combine(Path.GetTempPath(), $"kvjournal-mirror-{Guid.NewGuid():N}.db");
        try
        {
            using (var source = new EtcdSource(options))
                await source.SaveSnapshotAsync(file, CancellationToken.None).ConfigureAwait(false);
            var summary = await SnapshotCommand.ImportAsync(file, member, mirrorOf: options.Endpoint.ToString()).ConfigureAwait(false);
            Console.Error.WriteLine($"kvjournal: mirror of {options.Endpoint} starts at revision {summary.Revision} (compacted at {summary.CompactRevision}): " +
                $"{summary.Keys} keys in {summary.Versions} versions, {summary.Leases} leases, {summary.Users} users");
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static (EtcdSourceOptions Source, string[] MemberArgs) ParseSource(string[] args)
    {
        Uri? from = null;
        string? user = null, password = null, ca = null, cert = null, key = null;
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            string name = arg.Split('=', 2)[0];
            if (name is not ("--from" or "--from-user" or "--from-cacert" or "--from-cert" or "--from-key"))
            {
                rest.Add(arg);
                continue;
            }
            string value = arg.Contains('=') ? arg.Split('=', 2)[1] : i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{name} needs a value");
            switch (name)
            {
                case "--from":
                    from = EtcdSourceOptions.ParseEndpoint(value) ?? throw new ArgumentException($"--from {value}: give the source's client URL, http:// or https://");
                    break;
                case "--from-user":
                    (user, password) = EtcdSourceOptions.ParseUser(value);
                    break;
                case "--from-cacert": ca = value; break;
                case "--from-cert": cert = value; break;
                case "--from-key": key = value; break;
            }
        }
        if (from is null) throw new ArgumentException("mirror needs --from URL, the etcd cluster to mirror");
        if ((cert is null) != (key is null)) throw new ArgumentException("--from-cert and --from-key go together");
        return (new EtcdSourceOptions(from, user, password, ca, cert, key), [.. rest]);
    }
}
