using System.Buffers.Binary;

namespace KvJournal.Storage.Bbolt;

/// <summary>One branch or leaf page (a file page with its overflow, or an inline bucket's page inside a value), with checked element access.</summary>
internal sealed class BboltPage(byte[] bytes, string where, int start = 0)
{
    private const int ElementSize = 16;
    private const uint BucketLeafFlag = 0x01;

    public string Where => where;

    public ushort Flags => BinaryPrimitives.ReadUInt16LittleEndian(Span(start + 8, 2));

    public int Count => BinaryPrimitives.ReadUInt16LittleEndian(Span(start + 10, 2));

    public bool IsBranch => (Flags & BboltFile.BranchPage) != 0;

    public bool IsLeaf => (Flags & BboltFile.LeafPage) != 0;

    /// <summary>Branch element <paramref name="i"/>: the child page holding keys from its key on.</summary>
    public ulong Child(int i) => BinaryPrimitives.ReadUInt64LittleEndian(Span(Element(i) + 8, 8));

    /// <summary>Leaf element <paramref name="i"/>: its key, its value, and whether the value is a nested bucket.</summary>
    public (ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value, bool IsBucket) Leaf(int i)
    {
        int e = Element(i);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(Span(e, 4));
        long pos = BinaryPrimitives.ReadUInt32LittleEndian(Span(e + 4, 4));
        long keySize = BinaryPrimitives.ReadUInt32LittleEndian(Span(e + 8, 4));
        long valueSize = BinaryPrimitives.ReadUInt32LittleEndian(Span(e + 12, 4));
        long key = e + pos;
        if (key + keySize + valueSize > bytes.Length) throw new BboltFormatException($"{where}: element {i} points past the page");
        return (bytes.AsMemory((int)key, (int)keySize), bytes.AsMemory((int)(key + keySize), (int)valueSize), (flags & BucketLeafFlag) != 0);
    }

    /// <summary>Branch element <paramref name="i"/>'s key (the first key of its child).</summary>
    public ReadOnlyMemory<byte> BranchKey(int i)
    {
        int e = Element(i);
        long pos = BinaryPrimitives.ReadUInt32LittleEndian(Span(e, 4));
        long keySize = BinaryPrimitives.ReadUInt32LittleEndian(Span(e + 4, 4));
        if (e + pos + keySize > bytes.Length) throw new BboltFormatException($"{where}: element {i} points past the page");
        return bytes.AsMemory((int)(e + pos), (int)keySize);
    }

    private int Element(int i)
    {
        int e = start + BboltFile.PageHeaderSize + i * ElementSize;
        if (i < 0 || i >= Count || e + ElementSize > bytes.Length) throw new BboltFormatException($"{where}: element {i} is past the page");
        return e;
    }

    private ReadOnlySpan<byte> Span(int offset, int length)
    {
        if (offset < 0 || offset + length > bytes.Length) throw new BboltFormatException($"{where} is truncated");
        return bytes.AsSpan(offset, length);
    }
}
