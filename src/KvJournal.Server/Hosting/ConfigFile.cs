namespace KvJournal.Server.Hosting;

/// <summary>
/// etcd's --config-file: YAML whose keys are the flag names ("data-dir: /var/lib/etcd"). The
/// subset read here is what etcd's own sample file uses: one "key: value" per line, values plain
/// or quoted, lists of URLs written comma-separated, # comments and blank lines.
/// </summary>
public static class ConfigFile
{
    public static IEnumerable<(string Name, string Value)> Read(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"config file {path} does not exist");
        int number = 0;
        foreach (string raw in File.ReadLines(path))
        {
            number++;
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0) throw new ArgumentException($"{path}:{number}: want \"key: value\", got \"{line}\"");
            string key = line[..colon].Trim();
            string value = line[(colon + 1)..].Trim();
            if (value.Length >= 2 && (value[0] == '"' && value[^1] == '"' || value[0] == '\'' && value[^1] == '\'')) value = value[1..^1];
            else if (value.IndexOf(" #", StringComparison.Ordinal) is int comment and >= 0) value = value[..comment].TrimEnd();
            // etcd's sample leaves unset settings empty or null: they keep their defaults.
            if (value.Length == 0 || value == "null" || value == "~") continue;
            yield return (key, value);
        }
    }
}
