using KvJournal.Storage.Bbolt;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>
/// What BboltWriter writes, BboltFile reads back entry for entry: empty buckets, one leaf, trees
/// with branch levels, values on overflow pages. (That etcd's own bbolt opens and writes such a
/// file is shown over the wire by EtcdExportTests.)
/// </summary>
public sealed class BboltWriterTests
{
    [Theory]
    [InlineData(0, 10)]
    [InlineData(1, 10)]
    [InlineData(200, 50)]
    [InlineData(60_000, 40)]   // three levels: leaves, branches, a root branch
    [InlineData(30, 20_000)]   // values larger than a page
    public void WhatIsWrittenReadsBackInOrder(int count, int valueBytes)
    {
        var random = new Random(count * 31 + valueBytes);
        var entries = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
        while (entries.Count < count)
        {
            var value = new byte[random.Next(valueBytes + 1)];
            random.NextBytes(value);
            entries[$"key/{random.Next():x8}/{entries.Count}"] = value;
        }
        string path = Path.Combine(Path.GetTempPath(), $"bbolt-{Guid.NewGuid():N}.db");
        try
        {
            using (var output = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite))
            {
                var writer = new BboltWriter(output);
                writer.AddBucket("things", entries.Select(e => ((ReadOnlyMemory<byte>)System.Text.Encoding.UTF8.GetBytes(e.Key), (ReadOnlyMemory<byte>)e.Value)));
                writer.AddBucket("empty", []);
                writer.Finish();
            }
            using var db = BboltFile.Open(path);
            Assert.Equal(new FileInfo(path).Length, db.Size);
            Assert.Equal(["empty", "things"], db.Root.Entries().Select(e => System.Text.Encoding.UTF8.GetString(e.Key.Span)));
            Assert.Empty(db.Root.Bucket("empty")!.Entries());
            var read = db.Root.Bucket("things")!.Entries().Select(e => (System.Text.Encoding.UTF8.GetString(e.Key.Span), e.Value.ToArray())).ToList();
            Assert.Equal(entries.Select(e => (e.Key, e.Value)), read);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void KeysOutOfOrderAreRefused()
    {
        using var output = new MemoryStream();
        var writer = new BboltWriter(output);
        Assert.Throws<ArgumentException>(() => writer.AddBucket("b", [(new byte[] { 2 }, Array.Empty<byte>()), (new byte[] { 1 }, Array.Empty<byte>())]));
    }
}
