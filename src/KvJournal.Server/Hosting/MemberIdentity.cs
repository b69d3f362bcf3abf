using System.Globalization;
using System.Security.Cryptography;

namespace KvJournal.Server.Hosting;

/// <summary>
/// This member's id: random on first start, then kept in the data directory so it survives
/// restarts (it appears as <c>member_id</c> in every response header).
/// </summary>
public static class MemberIdentity
{
    public static ulong LoadOrCreate(string dataDir)
    {
        string path = Path.Combine(dataDir, "member.id");
        if (File.Exists(path))
            return ulong.Parse(File.ReadAllText(path).Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        ulong id;
        do id = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)); while (id == 0);
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, id.ToString("x16", CultureInfo.InvariantCulture));
        File.Move(tmp, path, overwrite: true);
        return id;
    }
}
