using KvJournal.Server.Hosting;

namespace KvJournal.Server;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "snapshot") return await Commands.SnapshotCommand.RunAsync(args[1..]).ConfigureAwait(false);
        if (args.Length > 0 && args[0] == "probe") return await Commands.ProbeCommand.RunAsync(args[1..]).ConfigureAwait(false);
        if (args.Length > 0 && args[0] == "mirror") return await Commands.MirrorCommand.RunAsync(args[1..]).ConfigureAwait(false);
        if (args.Contains("--help") || args.Contains("-h") || args.Contains("-help"))
        {
            Console.Out.WriteLine(ServerOptions.Usage);
            return 0;
        }
        if (args.Contains("--version") || args.Contains("-version"))
        {
            Console.Out.WriteLine($"kvjournal Version: {typeof(Program).Assembly.GetName().Version}");
            return 0;
        }

        ServerOptions options;
        try
        {
            options = ServerOptions.Parse(args);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"kvjournal: {ex.Message}");
            Console.Error.WriteLine("Run 'kvjournal --help' for the supported flags.");
            return 2;
        }

        return await RunMemberAsync(options, mirror: null).ConfigureAwait(false);
    }

    /// <summary>Runs a member until SIGINT or SIGTERM; with <paramref name="mirror"/> it also follows that etcd cluster.</summary>
    internal static async Task<int> RunMemberAsync(ServerOptions options, KvJournal.Member.Mirror.EtcdSourceOptions? mirror)
    {
        // SIGINT and SIGTERM stop the host (its console lifetime); the server then closes the journal.
        var server = new KvJournalServer(options) { Mirror = mirror };
        await using var stopServer = server.ConfigureAwait(false);
        try
        {
            await server.StartAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is KvJournal.Journal.JournalDamagedException or KvJournal.Journal.JournalUnavailableException or InvalidDataException or IOException)
        {
            // A damaged journal or snapshot, a journal that cannot be reached or is weaker than
            // configured, a port in use: refuse to start, saying where and what to do.
            Console.Error.WriteLine($"kvjournal: cannot start member {options.Name}: {ex.Message}");
            return 1;
        }
        Console.Error.WriteLine($"kvjournal: member {options.Name} ready to serve client requests on {string.Join(",", options.ListenClientUrls)} (data dir {Path.GetFullPath(options.EffectiveDataDir)})");
        await server.WaitForShutdownAsync(CancellationToken.None).ConfigureAwait(false);
        Console.Error.WriteLine($"kvjournal: member {options.Name} stopped");
        return 0;
    }
}
