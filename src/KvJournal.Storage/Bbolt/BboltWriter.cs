using System.Buffers;
using System.Buffers.Binary;

namespace KvJournal.Storage.Bbolt;

/// <summary>
/// Writes a new bbolt database (the layout is in FORMAT.md) from buckets given in full, each with
/// its keys in ascending byte order: leaf pages packed in order, branch pages above them, the root
/// bucket's leaf last, then an empty freelist and both meta pages. bbolt opens the result read-write
/// as if it had written it (it reads any fill of a page; it rebalances only what it changes).
/// The output must be seekable: the meta pages at its start are written last.
/// </summary>
public sealed class BboltWriter
{
    private const uint Magic = 0xED0CDAED;
    private const uint Version = 2;
    private const ushort FreelistPage = 0x10;
    private const int ElementSize = 16; // a leaf element and a branch element are both 16 bytes
    private const ulong FreelistPageId = 2;
    private const ulong FirstDataPage = 3;
    private const uint BucketLeafFlag = 0x01;

    private readonly Stream _output;
    private readonly int _pageSize;
    private readonly List<(byte[] Name, ulong Root)> _buckets = [];
    private ulong _nextPage = FirstDataPage;
    private bool _finished;

    public BboltWriter(Stream output, int pageSize = 4096)
    {
        if (!output.CanSeek) throw new ArgumentException("a bbolt file is written to a seekable stream", nameof(output));
        _output = output;
        _pageSize = pageSize;
        _output.Position = (long)FirstDataPage * pageSize;
    }

    /// <summary>Writes one top-level bucket; <paramref name="entries"/> must be in ascending key order with no key twice.</summary>
    public void AddBucket(string name, IEnumerable<(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value)> entries)
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        byte[] bucketName = System.Text.Encoding.UTF8.GetBytes(name);
        foreach (var (existing, _) in _buckets)
        {
            if (existing.AsSpan().SequenceEqual(bucketName)) throw new ArgumentException($"bucket {name} is already written", nameof(name));
        }
        _buckets.Add((bucketName, WriteTree(entries, leafFlags: 0)));
    }

    /// <summary>Writes the root bucket, the freelist and the meta pages; the file is complete after this.</summary>
    public void Finish()
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        _finished = true;
        _buckets.Sort((a, b) => a.Name.AsSpan().SequenceCompareTo(b.Name));
        var headers = new List<(ReadOnlyMemory<byte>, ReadOnlyMemory<byte>)>(_buckets.Count);
        foreach (var (name, root) in _buckets)
        {
            var header = new byte[16]; // root page id, sequence 0
            BinaryPrimitives.WriteUInt64LittleEndian(header, root);
            headers.Add((name, header));
        }
        ulong rootPage = WriteTree(headers, BucketLeafFlag);
        ulong pageCount = _nextPage;

        var page = new byte[_pageSize];
        _output.Position = (long)FreelistPageId * _pageSize;
        WritePageHeader(page, FreelistPageId, FreelistPage, count: 0, overflow: 0);
        _output.Write(page);
        for (ulong id = 0; id < 2; id++)
        {
            Array.Clear(page);
            WritePageHeader(page, id, BboltFile.MetaPage, 0, 0);
            var meta = page.AsSpan(BboltFile.PageHeaderSize);
            BinaryPrimitives.WriteUInt32LittleEndian(meta, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(meta[4..], Version);
            BinaryPrimitives.WriteUInt32LittleEndian(meta[8..], (uint)_pageSize);
            BinaryPrimitives.WriteUInt64LittleEndian(meta[16..], rootPage);
            BinaryPrimitives.WriteUInt64LittleEndian(meta[32..], FreelistPageId);
            BinaryPrimitives.WriteUInt64LittleEndian(meta[40..], pageCount);
            BinaryPrimitives.WriteUInt64LittleEndian(meta[48..], id); // as bbolt's own init: txids 0 and 1
            BinaryPrimitives.WriteUInt64LittleEndian(meta[BboltFile.MetaChecksumOffset..], BboltFile.Fnv1a64(meta[..BboltFile.MetaChecksumOffset]));
            _output.Position = (long)id * _pageSize;
            _output.Write(page);
        }
        _output.Position = (long)pageCount * _pageSize;
        _output.SetLength(_output.Position);
        _output.Flush();
    }

    // Leaves in key order, then each level of branches over the one below, up to a single root page.
    private ulong WriteTree(IEnumerable<(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value)> entries, uint leafFlags)
    {
        var level = new List<(ReadOnlyMemory<byte> FirstKey, ulong Page)>();
        var pending = new List<(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value)>();
        int size = BboltFile.PageHeaderSize;
        ReadOnlyMemory<byte> previous = default;
        bool first = true;
        foreach (var entry in entries)
        {
            if (!first && entry.Key.Span.SequenceCompareTo(previous.Span) <= 0) throw new ArgumentException("bucket keys must be ascending and distinct");
            first = false;
            previous = entry.Key;
            int add = ElementSize + entry.Key.Length + entry.Value.Length;
            if (pending.Count > 0 && (size + add > _pageSize || pending.Count == ushort.MaxValue))
            {
                level.Add((pending[0].Key, WriteNode(pending, leafFlags, isLeaf: true)));
                pending.Clear();
                size = BboltFile.PageHeaderSize;
            }
            pending.Add(entry);
            size += add;
        }
        // An empty bucket is one empty leaf page, as bbolt's own empty root.
        if (pending.Count > 0 || level.Count == 0) level.Add((pending.Count > 0 ? pending[0].Key : default, WriteNode(pending, leafFlags, isLeaf: true)));

        while (level.Count > 1)
        {
            var above = new List<(ReadOnlyMemory<byte>, ulong)>();
            var children = new List<(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value)>();
            size = BboltFile.PageHeaderSize;
            foreach (var (key, child) in level)
            {
                int add = ElementSize + key.Length;
                if (children.Count > 0 && (size + add > _pageSize || children.Count == ushort.MaxValue))
                {
                    above.Add((children[0].Key, WriteNode(children, 0, isLeaf: false)));
                    children.Clear();
                    size = BboltFile.PageHeaderSize;
                }
                var pageId = new byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(pageId, child);
                children.Add((key, pageId));
                size += add;
            }
            above.Add((children[0].Key, WriteNode(children, 0, isLeaf: false)));
            level = above;
        }
        return level[0].Page;
    }

    // One page (with overflow pages when its elements do not fit one): the element headers, then
    // each key (and a leaf's value) in element order. A branch element's "value" is its child's id.
    private ulong WriteNode(List<(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value)> elements, uint leafFlags, bool isLeaf)
    {
        int size = BboltFile.PageHeaderSize + elements.Count * ElementSize;
        foreach (var (key, value) in elements) size += key.Length + (isLeaf ? value.Length : 0);
        int pages = (size + _pageSize - 1) / _pageSize;
        ulong id = _nextPage;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(pages * _pageSize);
        try
        {
            var page = buffer.AsSpan(0, pages * _pageSize);
            page.Clear();
            WritePageHeader(page, id, isLeaf ? BboltFile.LeafPage : BboltFile.BranchPage, (ushort)elements.Count, (uint)(pages - 1));
            int data = BboltFile.PageHeaderSize + elements.Count * ElementSize;
            for (int i = 0; i < elements.Count; i++)
            {
                var (key, value) = elements[i];
                var element = page[(BboltFile.PageHeaderSize + i * ElementSize)..];
                int pos = data - (BboltFile.PageHeaderSize + i * ElementSize);
                if (isLeaf)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(element, leafFlags);
                    BinaryPrimitives.WriteUInt32LittleEndian(element[4..], (uint)pos);
                    BinaryPrimitives.WriteUInt32LittleEndian(element[8..], (uint)key.Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(element[12..], (uint)value.Length);
                    key.Span.CopyTo(page[data..]);
                    value.Span.CopyTo(page[(data + key.Length)..]);
                    data += key.Length + value.Length;
                }
                else
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(element, (uint)pos);
                    BinaryPrimitives.WriteUInt32LittleEndian(element[4..], (uint)key.Length);
                    value.Span.CopyTo(element[8..]); // the child's page id
                    key.Span.CopyTo(page[data..]);
                    data += key.Length;
                }
            }
            _output.Write(page);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        _nextPage += (ulong)pages;
        return id;
    }

    private static void WritePageHeader(Span<byte> page, ulong id, ushort flags, ushort count, uint overflow)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(page, id);
        BinaryPrimitives.WriteUInt16LittleEndian(page[8..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(page[10..], count);
        BinaryPrimitives.WriteUInt32LittleEndian(page[12..], overflow);
    }
}
