using System.Buffers.Binary;
using KvJournal.Storage.Bbolt;

namespace KvJournal.Storage.EtcdDb;

/// <summary>
/// What `etcdutl snapshot status` reports of an etcd database (a bbolt file): a CRC-32C over every
/// bucket's name and every key and value in it, in key order; the main revision of the last key
/// in the "key" bucket; the number of keys in all buckets; and the bytes in use.
/// </summary>
public readonly record struct EtcdDbStatus(uint Hash, long Revision, int TotalKey, long TotalSize)
{
    public static EtcdDbStatus Of(BboltFile db)
    {
        uint crc = ~0u;
        long revision = 0;
        int keys = 0;
        foreach (var top in db.Root.Entries())
        {
            string name = System.Text.Encoding.UTF8.GetString(top.Key.Span);
            var bucket = (top.IsBucket ? db.Root.Bucket(top.Key.Span) : null) ?? throw new BboltFormatException($"cannot get hash of bucket {name}");
            crc = Crc32C.Append(crc, top.Key.Span);
            bool isKeyBucket = name == "key";
            foreach (var entry in bucket.Entries())
            {
                crc = Crc32C.Append(crc, entry.Key.Span);
                crc = Crc32C.Append(crc, entry.Value.Span);
                if (isKeyBucket)
                {
                    if (entry.Key.Length < 8) throw new BboltFormatException($"bucket key: a key of {entry.Key.Length} bytes is not a revision");
                    revision = BinaryPrimitives.ReadInt64BigEndian(entry.Key.Span);
                }
                keys++;
            }
        }
        return new EtcdDbStatus(~crc, revision, keys, db.Size);
    }
}
