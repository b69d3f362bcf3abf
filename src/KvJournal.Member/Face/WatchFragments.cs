using Google.Protobuf;
using KvJournal.Protos.Wire;

namespace KvJournal.Member.Face;

/// <summary>
/// Splits a watch response the client allowed to be fragmented, as etcd's sendFragments does:
/// each piece holds as many events as fit under the limit (always at least one), all but the
/// last are marked <c>fragment = true</c>.
/// </summary>
public static class WatchFragments
{
    public static IEnumerable<WatchResponseFrame> Split(WatchResponseFrame whole, int maxBytes)
    {
        var events = whole.Events;
        int idx = 0;
        while (idx < events.Count)
        {
            var piece = new WatchResponseFrame
            {
                Header = whole.Header,
                WatchId = whole.WatchId,
                Created = whole.Created,
                Canceled = whole.Canceled,
                CompactRevision = whole.CompactRevision,
                CancelReason = whole.CancelReason,
                Fragment = true,
            };
            // Each event adds its field (tag + length + bytes), so the size is summed, not recomputed.
            long size = piece.CalculateSize();
            while (idx < events.Count)
            {
                int body = events[idx].Length;
                long field = 1 + CodedOutputStream.ComputeLengthSize(body) + body;
                if (piece.Events.Count > 0 && size + field >= maxBytes) break;
                piece.Events.Add(events[idx]);
                size += field;
                idx++;
            }
            if (idx == events.Count) piece.Fragment = false;
            yield return piece;
        }
    }
}
