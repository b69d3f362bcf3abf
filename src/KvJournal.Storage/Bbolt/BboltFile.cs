using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace KvJournal.Storage.Bbolt;

/// <summary>
/// A bbolt database opened read-only (the layout is in FORMAT.md): the current meta page, and the
/// buckets from the root down, read page by page from the file. Every page id and offset is
/// checked, so a damaged file is a <see cref="BboltFormatException"/>.
/// </summary>
public sealed class BboltFile : IDisposable
{
    private const uint Magic = 0xED0CDAED;
    private const uint Version = 2;
    internal const int PageHeaderSize = 16;
    internal const ushort BranchPage = 0x01, LeafPage = 0x02, MetaPage = 0x04;
    internal const int MetaChecksumOffset = 56;
    // bbolt keeps its trees shallow; a deeper walk means a cycle in a damaged file.
    internal const int MaxDepth = 64;

    private readonly SafeFileHandle _file;
    private readonly long _length;

    /// <summary>The page size the file was written with.</summary>
    public int PageSize { get; }

    /// <summary>The transaction id of the current meta.</summary>
    public ulong TxId { get; }

    /// <summary>Pages in use (the high-water mark): the size bbolt reports is this times the page size.</summary>
    public ulong PageCount { get; }

    /// <summary>bbolt's tx.Size(): the bytes in use.</summary>
    public long Size => (long)PageCount * PageSize;

    /// <summary>The root bucket, which holds the top-level buckets.</summary>
    public BboltBucket Root { get; }

    private BboltFile(SafeFileHandle file, long length, int pageSize, ulong txId, ulong pageCount, ulong rootPage)
    {
        _file = file;
        _length = length;
        PageSize = pageSize;
        TxId = txId;
        PageCount = pageCount;
        Root = new BboltBucket(this, rootPage, inlinePage: null);
    }

    public static BboltFile Open(string path)
    {
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            long length = RandomAccess.GetLength(file);
            var first = ReadMeta(file, length, 0);
            // Page 1 is at the page size meta 0 gives; if meta 0 is damaged, at bbolt's default.
            int pageSize = first.Error is null ? first.PageSize : 4096;
            var second = ReadMeta(file, length, pageSize);
            var meta = (first.Error, second.Error) switch
            {
                (null, null) => first.TxId >= second.TxId ? first : second,
                (null, _) => first,
                (_, null) => second,
                _ => throw new BboltFormatException($"not a bbolt database, or both meta pages are damaged: {first.Error}; {second.Error}"),
            };
            if ((long)meta.PageCount * meta.PageSize > length)
                throw new BboltFormatException($"the file is truncated: its meta says {meta.PageCount} pages of {meta.PageSize} bytes, the file has {length} bytes");
            return new BboltFile(file, length, meta.PageSize, meta.TxId, meta.PageCount, meta.RootPage);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private readonly record struct Meta(int PageSize, ulong RootPage, ulong PageCount, ulong TxId, string? Error);

    private static Meta ReadMeta(SafeFileHandle file, long length, long offset)
    {
        Span<byte> page = stackalloc byte[PageHeaderSize + 64];
        if (offset + page.Length > length) return new Meta(0, 0, 0, 0, $"no meta page at offset {offset} (the file has {length} bytes)");
        RandomAccess.Read(file, page, offset);
        var meta = page[PageHeaderSize..];
        if ((BinaryPrimitives.ReadUInt16LittleEndian(page[8..]) & MetaPage) == 0) return new Meta(0, 0, 0, 0, $"page at offset {offset} is not a meta page");
        if (BinaryPrimitives.ReadUInt32LittleEndian(meta) != Magic) return new Meta(0, 0, 0, 0, $"meta at offset {offset} has the wrong magic number");
        if (BinaryPrimitives.ReadUInt32LittleEndian(meta[4..]) != Version) return new Meta(0, 0, 0, 0, $"meta at offset {offset} has an unknown version");
        if (BinaryPrimitives.ReadUInt64LittleEndian(meta[MetaChecksumOffset..]) != Fnv1a64(meta[..MetaChecksumOffset])) return new Meta(0, 0, 0, 0, $"meta at offset {offset} fails its checksum");
        int pageSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(meta[8..]);
        if (pageSize < 1024 || pageSize > 1 << 20 || (pageSize & (pageSize - 1)) != 0) return new Meta(0, 0, 0, 0, $"meta at offset {offset} has an unusable page size {pageSize}");
        return new Meta(pageSize, BinaryPrimitives.ReadUInt64LittleEndian(meta[16..]), BinaryPrimitives.ReadUInt64LittleEndian(meta[40..]),
            BinaryPrimitives.ReadUInt64LittleEndian(meta[48..]), null);
    }

    internal static ulong Fnv1a64(ReadOnlySpan<byte> bytes)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in bytes)
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }
        return hash;
    }

    /// <summary>Page <paramref name="id"/> with its overflow pages, checked to lie within the pages in use.</summary>
    internal BboltPage ReadPage(ulong id)
    {
        if (id < 2 || id >= PageCount) throw new BboltFormatException($"page {id} is out of range (the database has {PageCount} pages)");
        long offset = (long)id * PageSize;
        Span<byte> header = stackalloc byte[PageHeaderSize];
        RandomAccess.Read(_file, header, offset);
        ulong overflow = BinaryPrimitives.ReadUInt32LittleEndian(header[12..]);
        if (id + overflow >= PageCount || offset + (long)(overflow + 1) * PageSize > _length)
            throw new BboltFormatException($"page {id} runs past the end of the database ({overflow} overflow pages)");
        var bytes = new byte[(int)((overflow + 1) * (ulong)PageSize)];
        RandomAccess.Read(_file, bytes, offset);
        var page = new BboltPage(bytes, $"page {id}");
        if (BinaryPrimitives.ReadUInt64LittleEndian(bytes) != id) throw new BboltFormatException($"page {id} says it is page {BinaryPrimitives.ReadUInt64LittleEndian(bytes)}");
        return page;
    }

    public void Dispose() => _file.Dispose();
}
