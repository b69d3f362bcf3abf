using System.Security.Cryptography;
using System.Text;

namespace KvJournal.Storage.Auth;

/// <summary>
/// Password hashes as stored in a user record: bcrypt ("$2a$cost$..."), as etcd writes them, so
/// users move between etcd and KvJournal (snapshot import and export) and keep their passwords;
/// and, to check only, the PBKDF2-HMAC-SHA256 hashes older KvJournal versions wrote
/// ("pbkdf2-sha256$iterations$salt$hash", base64 parts). Hashing and checking run in the shard's
/// face, outside any lock: the journal only sees hashes.
/// </summary>
public static class PasswordHash
{
    /// <summary>etcd's default --bcrypt-cost (Go's bcrypt.DefaultCost).</summary>
    public const int DefaultCost = 10;
    private const string Pbkdf2Scheme = "pbkdf2-sha256";

    /// <summary>A bcrypt hash of <paramref name="password"/> at <paramref name="cost"/> (4 to 31, as etcd's flag).</summary>
    public static string Hash(string password, int cost = DefaultCost) => BCrypt.Net.BCrypt.HashPassword(password, cost);

    /// <summary>Whether <paramref name="password"/> matches <paramref name="stored"/> (false for anything malformed).</summary>
    public static bool Verify(string password, ReadOnlySpan<byte> stored)
    {
        string text = Encoding.ASCII.GetString(stored);
        if (text.StartsWith("$2", StringComparison.Ordinal)) return VerifyBcrypt(password, text);
        string[] parts = text.Split('$');
        if (parts.Length != 4 || parts[0] != Pbkdf2Scheme || !int.TryParse(parts[1], out int iterations) || iterations <= 0) return false;
        try
        {
            byte[] salt = Convert.FromBase64String(parts[2]);
            byte[] expected = Convert.FromBase64String(parts[3]);
            byte[] actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
            return CryptographicOperations.FixedTimeEquals(actual, expected);
        }
        catch (FormatException)
        {
            return false;
        }
    }

    // etcd's own hashes: bcrypt ($2a$, $2b$, $2y$), as Go's x/crypto/bcrypt writes them.
    private static bool VerifyBcrypt(string password, string hash)
    {
        try
        {
            return BCrypt.Net.BCrypt.Verify(password, hash);
        }
        catch (BCrypt.Net.SaltParseException)
        {
            return false;
        }
    }
}
