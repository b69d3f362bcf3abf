using FASTER.core;

namespace KvJournal.Journal.Embedded;

/// <summary>
/// One open FasterLog with its device and commit metadata, and the readers scanning it. The
/// embedded journal replaces it as a whole to heal after a failed commit: readers are asked to
/// leave (<see cref="Replaced"/>), and it is disposed once they have.
/// </summary>
internal sealed class LogInstance : IDisposable
{
    // Commits between two writes of the commit metadata file: the most a recovery scans forward.
    private const int CommitMetadataInterval = 1024;
    private static readonly TimeSpan RecoveryTimeout = TimeSpan.FromSeconds(60);

    private readonly FasterLogSettings _settings;
    private readonly DeviceLogCommitCheckpointManager _commitMetadata;
    private readonly CancellationTokenSource _replaced = new();
    private readonly TaskCompletionSource _readersGone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _readersLock = new();
    private int _readers;
    private bool _replacing;

    private LogInstance(FasterLogSettings settings, DeviceLogCommitCheckpointManager commitMetadata, FasterLog log)
    {
        _settings = settings;
        _commitMetadata = commitMetadata;
        Log = log;
    }

    public FasterLog Log { get; }

    /// <summary>Cancelled when this instance is being replaced: readers leave and go on with the next one.</summary>
    public CancellationToken Replaced => _replaced.Token;

    /// <summary>log2 of a segment file's size for entries up to <paramref name="maxEntryBytes"/>.</summary>
    public static int SegmentBitsFor(int maxEntryBytes) => Math.Max(30, PageBitsFor(maxEntryBytes)); // 1 GiB files: trimming frees whole segments

    /// <summary>The segment file holding <paramref name="position"/>: FasterLog names them fasterlog.log.N, each 2^SegmentBitsFor bytes of the address space.</summary>
    public static string SegmentFile(string directory, int maxEntryBytes, long position) =>
        Path.Combine(directory, "fasterlog.log." + (position >> SegmentBitsFor(maxEntryBytes)));

    /// <summary>Where <paramref name="position"/> lies in its segment file.</summary>
    public static long OffsetInSegment(int maxEntryBytes, long position) => position & ((1L << SegmentBitsFor(maxEntryBytes)) - 1);

    // An entry never spans a page: a page holds at least two of the largest entries (≥ 4 MiB).
    internal static int PageBitsFor(int maxEntryBytes) => Math.Max(22, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)maxEntryBytes * 2));

    /// <summary>
    /// Opens (and recovers) the log under <paramref name="directory"/>. Recovery of a damaged log
    /// can fail deep inside FasterLog, or never finish: it is bounded, and either ends in
    /// <see cref="JournalDamagedException"/>.
    /// </summary>
    public static LogInstance Open(string directory, int maxEntryBytes)
    {
        int pageBits = PageBitsFor(maxEntryBytes);
        // Fast commit: a commit is a record in the log itself, so it costs one write of the log's
        // tail. The commit metadata file (created, written and the old one unlinked: three more
        // synchronous file-system operations) is written only every CommitMetadataInterval commits
        // and whenever the begin address moves; recovery scans forward from it for commit records.
        var commitMetadata = new DeviceLogCommitCheckpointManager(new LocalStorageNamedDeviceFactory(),
            new DefaultCheckpointNamingScheme(directory), removeOutdated: true, fastCommitThrottleFreq: CommitMetadataInterval);
        var settings = new FasterLogSettings(directory, deleteDirOnDispose: false)
        {
            FastCommitMode = true,
            LogCommitManager = commitMetadata,
            PageSizeBits = pageBits,
            MemorySizeBits = pageBits + 1, // 2 pages of tail in memory: one filling while the other flushes
            SegmentSizeBits = SegmentBitsFor(maxEntryBytes),
            LogChecksum = LogChecksumType.PerEntry,
            TryRecoverLatest = true,
        };
        var open = Task.Run(() => new FasterLog(settings));
        try
        {
            if (!open.Wait(RecoveryTimeout))
                throw new JournalDamagedException($"the journal under {directory} did not recover within {RecoveryTimeout.TotalSeconds:0} s: its files are damaged");
            return new LogInstance(settings, commitMetadata, open.Result);
        }
        catch (AggregateException ex)
        {
            commitMetadata.Dispose();
            settings.Dispose();
            throw new JournalDamagedException($"the journal under {directory} cannot be recovered: {ex.InnerException!.Message}", ex.InnerException);
        }
    }

    /// <summary>Registers a reader; false once the instance is being replaced.</summary>
    public bool TryEnterReader()
    {
        lock (_readersLock)
        {
            if (_replacing) return false;
            _readers++;
            return true;
        }
    }

    public void ReaderLeft()
    {
        lock (_readersLock)
        {
            if (--_readers == 0 && _replacing) _readersGone.TrySetResult();
        }
    }

    /// <summary>Asks every reader to leave; completes once they have.</summary>
    public Task ReplaceAsync()
    {
        lock (_readersLock)
        {
            _replacing = true;
            if (_readers == 0) _readersGone.TrySetResult();
        }
        _replaced.Cancel();
        return _readersGone.Task;
    }

    public void Dispose()
    {
        Log.Dispose();
        _commitMetadata.Dispose();
        _settings.Dispose();
        _replaced.Dispose();
    }
}
