namespace KvJournal.Storage.Bbolt;

/// <summary>A file that is not a bbolt database or is damaged: what is wrong and where.</summary>
public sealed class BboltFormatException(string message) : Exception(message);
