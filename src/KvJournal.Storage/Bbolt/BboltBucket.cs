using System.Buffers.Binary;

namespace KvJournal.Storage.Bbolt;

/// <summary>One bucket of a <see cref="BboltFile"/>: its entries in key order, and its nested buckets by name.</summary>
public sealed class BboltBucket
{
    private const int HeaderSize = 16;
    private readonly BboltFile _file;
    private readonly ulong _root;
    private readonly BboltPage? _inline;

    internal BboltBucket(BboltFile file, ulong root, BboltPage? inlinePage)
    {
        _file = file;
        _root = root;
        _inline = inlinePage;
    }

    /// <summary>One key of the bucket: its value, or (for a nested bucket) no value.</summary>
    public readonly record struct Entry(ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value, bool IsBucket);

    /// <summary>Every entry in key order, nested buckets included (as bbolt's ForEach gives them).</summary>
    public IEnumerable<Entry> Entries() => Walk(_inline ?? _file.ReadPage(_root), depth: 0);

    private IEnumerable<Entry> Walk(BboltPage page, int depth)
    {
        if (depth > BboltFile.MaxDepth) throw new BboltFormatException($"{page.Where}: the tree is deeper than {BboltFile.MaxDepth} levels (a cycle?)");
        if (page.IsBranch)
        {
            for (int i = 0; i < page.Count; i++)
                foreach (var entry in Walk(_file.ReadPage(page.Child(i)), depth + 1)) yield return entry;
        }
        else if (page.IsLeaf)
        {
            for (int i = 0; i < page.Count; i++)
            {
                var (key, value, isBucket) = page.Leaf(i);
                yield return new Entry(key, isBucket ? ReadOnlyMemory<byte>.Empty : value, isBucket);
            }
        }
        else
        {
            throw new BboltFormatException($"{page.Where} is neither a branch nor a leaf page (flags {page.Flags:x})");
        }
    }

    /// <summary>The nested bucket named <paramref name="name"/>, or null.</summary>
    public BboltBucket? Bucket(ReadOnlySpan<byte> name)
    {
        var leaf = LeafFor(_inline ?? _file.ReadPage(_root), name);
        for (int i = 0; i < leaf.Count; i++)
        {
            var (key, value, isBucket) = leaf.Leaf(i);
            if (!isBucket || !key.Span.SequenceEqual(name)) continue;
            if (value.Length < HeaderSize) throw new BboltFormatException($"bucket {System.Text.Encoding.UTF8.GetString(name)}: its header is truncated");
            ulong root = BinaryPrimitives.ReadUInt64LittleEndian(value.Span);
            if (root != 0) return new BboltBucket(_file, root, null);
            // Inline: the bucket's one leaf page follows its header inside the value.
            var copy = value.ToArray();
            return new BboltBucket(_file, 0, new BboltPage(copy, $"inline bucket {System.Text.Encoding.UTF8.GetString(name)}", HeaderSize));
        }
        return null;
    }

    /// <summary>The bucket named <paramref name="name"/> (UTF-8), or null.</summary>
    public BboltBucket? Bucket(string name) => Bucket(System.Text.Encoding.UTF8.GetBytes(name));

    // The leaf page that holds `name` if the bucket has it: down the one branch whose range covers it.
    private BboltPage LeafFor(BboltPage page, ReadOnlySpan<byte> name)
    {
        for (int depth = 0; ; depth++)
        {
            if (depth > BboltFile.MaxDepth) throw new BboltFormatException($"{page.Where}: the tree is deeper than {BboltFile.MaxDepth} levels (a cycle?)");
            if (page.IsLeaf || (page.IsBranch && page.Count == 0)) return page;
            if (!page.IsBranch) throw new BboltFormatException($"{page.Where} is neither a branch nor a leaf page (flags {page.Flags:x})");
            int child = 0;
            for (int i = 1; i < page.Count && page.BranchKey(i).Span.SequenceCompareTo(name) <= 0; i++) child = i;
            page = _file.ReadPage(page.Child(child));
        }
    }
}
