using Grpc.Core;
using KvJournal.Protos.JournalService;

namespace KvJournal.Journal.Remote;

/// <summary>
/// A read-only stream over the data of gRPC snapshot chunks, read as they arrive; disposing it
/// disposes <paramref name="owner"/> (the call the chunks come from), when given.
/// </summary>
internal sealed class ChunkReadStream(IAsyncStreamReader<SnapshotChunk> chunks, SnapshotChunk? first, IDisposable? owner = null) : Stream
{
    private ReadOnlyMemory<byte> _current = first?.Data.Memory ?? ReadOnlyMemory<byte>.Empty;
    private bool _ended;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_current.IsEmpty)
        {
            if (_ended || !await chunks.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                _ended = true;
                return 0;
            }
            _current = chunks.Current.Data.Memory;
        }
        int n = Math.Min(buffer.Length, _current.Length);
        _current[..n].CopyTo(buffer);
        _current = _current[n..];
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

    protected override void Dispose(bool disposing)
    {
        if (disposing) owner?.Dispose();
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
