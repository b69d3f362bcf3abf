using System.Buffers.Binary;
using System.Numerics;

namespace KvJournal;

/// <summary>
/// CRC-32C (Castagnoli), eight bytes per step on the CPU's crc32 instruction where it has one: the
/// one checksum every layer frames with (journal entries, journal messages, the durable-tail mark)
/// and HashKV computes.
/// </summary>
public static class Crc32C
{
    public static uint Append(uint crc, ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(bytes));
            bytes = bytes[8..];
        }
        foreach (byte b in bytes) crc = BitOperations.Crc32C(crc, b);
        return crc;
    }

    public static uint Append(uint crc, long value) => BitOperations.Crc32C(crc, (ulong)value);

    /// <summary>The standard CRC-32C of <paramref name="bytes"/> (seed and result inverted, as iSCSI and ext4 use it).</summary>
    public static uint Of(ReadOnlySpan<byte> bytes) => ~Append(~0u, bytes);
}
