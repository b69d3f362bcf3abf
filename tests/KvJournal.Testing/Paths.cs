namespace KvJournal.Testing;

/// <summary>Where the repository, the built server and the reference etcd binaries are.</summary>
public static class Paths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>
    /// The program that starts the server: the native build named by $KVJOURNAL_SERVER when set
    /// (tools/test.sh publishes it, so the suite tests what ships), else dotnet running the
    /// kvjournal.dll that the project reference copies next to the tests (or the harness).
    /// </summary>
    public static string ServerProgram => NativeServer ?? "dotnet";

    /// <summary>The server's command-line arguments for <see cref="ServerProgram"/>.</summary>
    public static IEnumerable<string> ServerArgs(IEnumerable<string> args) =>
        NativeServer is null ? args.Prepend(Path.Combine(AppContext.BaseDirectory, "kvjournal.dll")) : args;

    private static string? NativeServer => Environment.GetEnvironmentVariable("KVJOURNAL_SERVER") is { Length: > 0 } path ? path : null;

    /// <summary>The reference etcd's bin folder: $ETCDREF_HOME/bin, default /tmp/etcdref/bin (tools/test.sh installs it).</summary>
    public static string EtcdBin => Path.Combine(Environment.GetEnvironmentVariable("ETCDREF_HOME") is { Length: > 0 } h ? h : "/tmp/etcdref", "bin");

    public static string Etcd => Require(Path.Combine(EtcdBin, "etcd"));

    public static string Etcdctl => Require(Path.Combine(EtcdBin, "etcdctl"));

    public static string Etcdutl => Require(Path.Combine(EtcdBin, "etcdutl"));

    public static string NewTempDir(string prefix)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kvjournal-tests", $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void DeleteDir(string dir)
    {
        try
        {
            Directory.Delete(dir, recursive: true);
        }
        catch (IOException)
        {
            // a file still held open; the OS temp cleaner gets it
        }
    }

    private static string Require(string path) => File.Exists(path)
        ? path
        : throw new FileNotFoundException($"{path} is missing: run tools/test.sh (it installs the reference etcd) or set ETCDREF_HOME", path);

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "KvJournal.sln"))) return dir.FullName;
        }
        throw new DirectoryNotFoundException("KvJournal.sln not found above " + AppContext.BaseDirectory);
    }
}
