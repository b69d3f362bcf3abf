using System.Globalization;

namespace KvJournal.LoadHarness;

/// <summary>"--name value" pairs with integer values; unknown names are an error.</summary>
public sealed class HarnessArgs
{
    private readonly Dictionary<string, int> _values = [];

    public static HarnessArgs Parse(string[] args)
    {
        var a = new HarnessArgs();
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || !int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                throw new ArgumentException($"expected --name N, got {args[i]} {args[i + 1]}");
            a._values[args[i][2..]] = v;
        }
        if (args.Length % 2 != 0) throw new ArgumentException($"flag {args[^1]} needs a value");
        return a;
    }

    public int Get(string name, int fallback) => _values.GetValueOrDefault(name, fallback);
}
