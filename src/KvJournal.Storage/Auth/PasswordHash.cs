using System.Security.Cryptography;
using System.Text;

namespace KvJournal.Storage.Auth;

/// <summary>
/// Password hashes as stored in a user record: PBKDF2-HMAC-SHA256 from the .NET runtime, as
/// "pbkdf2-sha256$iterations$salt$hash" with base64 parts; and etcd's bcrypt hashes ("$2a$..."),
/// which users imported from etcd keep, checked with BCrypt.Net. Hashing and checking run in the
/// shard's face, outside any lock: the journal only sees hashes.
/// </summary>
public static class PasswordHash
{
    // OWASP's floor for PBKDF2-HMAC-SHA256 is 600,000; a login then costs about 0.2 s of CPU here.
    // 210,000 keeps etcdctl --user (one login per command) quick while staying costly to guess.
    private const int Iterations = 210_000;
    private const int SaltBytes = 16;
    private const int HashBytes = 32;
    private const string Scheme = "pbkdf2-sha256";

    public static string Hash(string password)
    {
        byte[] salt = RandomNumberGenerator.GetBytes(SaltBytes);
        byte[] hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Iterations, HashAlgorithmName.SHA256, HashBytes);
        return $"{Scheme}${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    /// <summary>Whether <paramref name="password"/> matches <paramref name="stored"/> (false for anything malformed).</summary>
    public static bool Verify(string password, ReadOnlySpan<byte> stored)
    {
        string text = Encoding.ASCII.GetString(stored);
        if (text.StartsWith("$2", StringComparison.Ordinal)) return VerifyBcrypt(password, text);
        string[] parts = text.Split('$');
        if (parts.Length != 4 || parts[0] != Scheme || !int.TryParse(parts[1], out int iterations) || iterations <= 0) return false;
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
