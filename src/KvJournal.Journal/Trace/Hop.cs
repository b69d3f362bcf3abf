namespace KvJournal.Journal.Trace;
// SCRATCH: time between steps of a sequential put, averaged.
public static class Hop
{
    public static readonly long[] T = new long[12];
    private static readonly double[] Sum = new double[12];
    private static int _n;
    public static void Mark(int i) => T[i] = System.Diagnostics.Stopwatch.GetTimestamp();
    public static void End()
    {
        for (int i = 1; i < 12; i++) if (T[i] != 0 && T[0] != 0) Sum[i] += (T[i] - T[0]) * 1e6 / System.Diagnostics.Stopwatch.Frequency;
        Array.Clear(T);
        if (++_n % 2000 == 0)
        {
            Console.Error.WriteLine("hops(us): " + string.Join(" ", Enumerable.Range(1, 11).Select(i => $"{i}:{Sum[i] / 2000:F1}")));
            Array.Clear(Sum);
        }
    }
}
