namespace KvJournal.Testing;

/// <summary>
/// Waits for a state servers reach on their own (a mirror catching up, a snapshot stored, a key
/// gone) by asking again, bounded in time: the one polling helper of the tests.
/// </summary>
public static class Poll
{
    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan within, string? what = null)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var value = await probe();
            if (done(value)) return value;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{what ?? "condition"} not reached in {within}: last {value}");
            await Task.Delay(50);
        }
    }
}
