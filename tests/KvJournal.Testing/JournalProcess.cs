using KvJournal.Protos.JournalService;

namespace KvJournal.Testing;

/// <summary>
/// A journal server (`kvjournal journal`) this test started on 127.0.0.1. Members reach it at
/// <see cref="Url"/>; a restart on the same data directory and port is how a test brings it back.
/// </summary>
public sealed class JournalProcess : ServerProcess
{
    private JournalProcess(int port, string dataDir, bool ownsDataDir)
        : base(Paths.ServerProgram, Paths.ServerArgs(["journal", "--listen-urls", $"http://127.0.0.1:{port}", "--data-dir", dataDir]), port, dataDir, ownsDataDir)
    {
        Journal = new Journal.JournalClient(Channel);
    }

    public string Url => $"http://127.0.0.1:{Port}";

    public Journal.JournalClient Journal { get; }

    /// <summary>
    /// Starts a journal server. With no <paramref name="dataDir"/> it gets a temporary one, deleted on
    /// dispose; with a <paramref name="port"/> it listens there (a restart where members expect it).
    /// </summary>
    public static Task<JournalProcess> StartAsync(string? dataDir = null, int? port = null) =>
        ReadyAsync(() => new JournalProcess(port ?? Ports.Free(), dataDir ?? Paths.NewTempDir("journal"), dataDir is null));

    protected override async Task ProbeAsync(DateTime deadline) =>
        await Journal.StatusAsync(new StatusRequest { Stream = "default" }, deadline: deadline);
}
