using System.Threading.Channels;
using Etcdserverpb;
using KvJournal.Member.Face;
using KvJournal.Protos.Wire;

namespace KvJournal.Unit.Tests;

/// <summary>One watch stream on the face, driven as a client drives one: requests in, responses out.</summary>
public sealed class FaceWatch : IAsyncDisposable
{
    private readonly Channel<WatchRequest> _requests = Channel.CreateUnbounded<WatchRequest>();
    private readonly Channel<WatchResponseFrame> _responses = Channel.CreateUnbounded<WatchResponseFrame>();
    private readonly CancellationTokenSource _stop = new();
    private Task _serving = Task.CompletedTask;

    public static FaceWatch Open(ShardServer face, CallerIdentity who)
    {
        var watch = new FaceWatch();
        watch._serving = face.WatchAsync(watch._requests.Reader.ReadAllAsync(), who, requireLeader: false,
            (frame, _, ct) => watch._responses.Writer.WriteAsync(frame.Clone(), ct).AsTask(), watch._stop.Token);
        return watch;
    }

    public void Send(WatchRequest request) => _requests.Writer.TryWrite(request);

    /// <summary>The next response, within 10 s.</summary>
    public async Task<WatchResponseFrame> NextAsync() =>
        await _responses.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try { await _serving; } catch (OperationCanceledException) { }
        _stop.Dispose();
    }
}
