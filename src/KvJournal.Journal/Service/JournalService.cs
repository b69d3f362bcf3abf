using Google.Protobuf;
using Grpc.Core;
using KvJournal.Journal.Embedded;
using KvJournal.Journal.Remote;
using KvJournal.Protos.JournalService;

namespace KvJournal.Journal.Service;

/// <summary>
/// The journal server's gRPC API (protos/kvjournal/journal_service.proto) over its streams: each
/// call is one stream's FasterLog, so group commit spans every member appending to that stream.
/// </summary>
public sealed class JournalService(JournalStreams streams) : Protos.JournalService.Journal.JournalBase
{
    // A read response holds at most this much, so a catching-up member gets big steady batches.
    private const int ReadBatchBytes = 1 << 20;
    private const int SnapshotChunkBytes = 1 << 20;

    public override async Task<AppendResponse> Append(AppendRequest request, ServerCallContext context)
    {
        var journal = Stream(request.Stream);
        foreach (var entry in request.Entries)
        {
            if (entry.Length > streams.MaxEntryBytes)
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"an entry of {entry.Length} bytes exceeds the journal's --max-entry-bytes {streams.MaxEntryBytes}"));
        }
        // Enqueued in request order (AppendAsync enqueues before it returns), then awaited together:
        // one commit covers the whole batch.
        var appends = new Task<long>[request.Entries.Count];
        for (int i = 0; i < appends.Length; i++) appends[i] = Appended(journal, request.Entries[i].Memory);
        var response = new AppendResponse();
        try
        {
            foreach (var append in appends) response.Positions.Add(await append.ConfigureAwait(false));
        }
        catch (JournalUnavailableException ex)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, ex.Message));
        }
        return response;
    }

    private static Task<long> Appended(FasterLogJournal journal, ReadOnlyMemory<byte> entry)
    {
        try
        {
            return journal.AppendAsync(entry).AsTask();
        }
        catch (JournalUnavailableException ex)
        {
            return Task.FromException<long>(ex);
        }
    }

    public override async Task Read(ReadRequest request, IServerStreamWriter<ReadResponse> responseStream, ServerCallContext context)
    {
        var journal = Stream(request.Stream);
        var batch = new ReadResponse();
        int batchBytes = 0;
        async Task Flush()
        {
            batch.DurablePosition = journal.LastDurablePosition;
            await responseStream.WriteAsync(batch, context.CancellationToken).ConfigureAwait(false);
            batch = new ReadResponse();
            batchBytes = 0;
        }
        IAsyncEnumerator<JournalRecord> records;
        try
        {
            records = journal.ReadAsync(request.AfterPosition, context.CancellationToken).GetAsyncEnumerator(context.CancellationToken);
        }
        catch (JournalTrimmedException ex)
        {
            throw new RpcException(new Status(StatusCode.OutOfRange, ex.Message));
        }
        await using (records.ConfigureAwait(false))
        {
            while (true)
            {
                ValueTask<bool> next;
                try
                {
                    next = records.MoveNextAsync();
                    // Send what is gathered before waiting for entries that are not durable yet.
                    if (!next.IsCompleted && batch.Entries.Count > 0) await Flush().ConfigureAwait(false);
                    if (!await next.ConfigureAwait(false)) break;
                }
                catch (JournalTrimmedException ex)
                {
                    throw new RpcException(new Status(StatusCode.OutOfRange, ex.Message));
                }
                var record = records.Current;
                batch.Entries.Add(new StoredEntry { Position = record.Position, Data = ByteString.CopyFrom(record.Data.Span) });
                batchBytes += record.Data.Length;
                if (batchBytes >= ReadBatchBytes) await Flush().ConfigureAwait(false);
            }
        }
    }

    public override Task<StatusResponse> Status(StatusRequest request, ServerCallContext context)
    {
        var journal = Stream(request.Stream);
        return Task.FromResult(new StatusResponse { FirstPosition = journal.FirstPosition, LastDurablePosition = journal.LastDurablePosition });
    }

    public override async Task<TrimResponse> Trim(TrimRequest request, ServerCallContext context)
    {
        var journal = Stream(request.Stream);
        await journal.TrimBelowAsync(request.BelowPosition, context.CancellationToken).ConfigureAwait(false);
        return new TrimResponse { FirstPosition = journal.FirstPosition };
    }

    public override async Task<PutSnapshotResponse> PutSnapshot(IAsyncStreamReader<SnapshotChunk> requestStream, ServerCallContext context)
    {
        if (!await requestStream.MoveNext(context.CancellationToken).ConfigureAwait(false))
            throw new RpcException(new Status(StatusCode.InvalidArgument, "a snapshot needs at least one chunk"));
        var first = requestStream.Current;
        var journal = Stream(first.Stream);
        await using var data = new ChunkReadStream(requestStream, first);
        await journal.PutSnapshotAsync(first.Position, data, context.CancellationToken).ConfigureAwait(false);
        return new PutSnapshotResponse();
    }

    public override async Task GetSnapshot(GetSnapshotRequest request, IServerStreamWriter<SnapshotChunk> responseStream, ServerCallContext context)
    {
        var journal = Stream(request.Stream);
        var snapshot = await journal.GetSnapshotAsync(long.MaxValue, context.CancellationToken).ConfigureAwait(false);
        if (snapshot is null) return;
        await using (snapshot.ConfigureAwait(false))
        {
            var buffer = new byte[SnapshotChunkBytes];
            int n;
            while ((n = await snapshot.Data.ReadAsync(buffer, context.CancellationToken).ConfigureAwait(false)) > 0)
            {
                await responseStream.WriteAsync(new SnapshotChunk { Stream = request.Stream, Position = snapshot.Position, Data = ByteString.CopyFrom(buffer, 0, n) }, context.CancellationToken).ConfigureAwait(false);
            }
        }
    }

    private FasterLogJournal Stream(string name) =>
        JournalStreams.IsValidName(name) ? streams.Get(name)
            : throw new RpcException(new Status(StatusCode.InvalidArgument, $"invalid stream name \"{name}\": want lower-case letters, digits and '-'"));
}
