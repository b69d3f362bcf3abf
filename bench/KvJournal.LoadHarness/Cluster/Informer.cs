using System.Collections.Concurrent;
using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.LoadHarness.Cluster;

/// <summary>
/// One apiserver's watch cache reflector for one resource: a watch from the revision of a list,
/// with prev_kv and progress_notify on its own stream, and RequestProgress every 100 ms as
/// consistent reads from the cache send. Records how long after its write's acknowledgement
/// each event arrives ("lag NAME") and how long each progress request waits ("progress").
/// </summary>
public sealed class Informer : IAsyncDisposable
{
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromMilliseconds(100);
    private readonly ResourceClient _client;
    private readonly Func<CallRecorder> _recorder;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<long> _progressSent = new();
    private readonly string _lagName;
    private AsyncDuplexStreamingCall<WatchRequest, WatchResponse>? _call;
    private Task _reading = Task.CompletedTask, _requesting = Task.CompletedTask;

    public Informer(ResourceClient client, int apiserver, Func<CallRecorder> recorder)
    {
        _client = client;
        _recorder = recorder;
        _lagName = $"lag {client.Resource.ToString().ToLowerInvariant()}@{apiserver}";
    }

    public async Task StartAsync()
    {
        long listed = await _client.CurrentRevisionAsync();
        string prefix = ClusterEndpoints.Prefix(_client.Resource);
        _call = _client.OpenWatch(_stop.Token);
        await _call.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest
            {
                Key = ByteString.CopyFromUtf8(prefix),
                RangeEnd = ClusterEndpoints.PrefixEnd(_client.Resource),
                StartRevision = listed + 1,
                PrevKv = true,
                ProgressNotify = true,
            },
        });
        if (!await _call.ResponseStream.MoveNext(_stop.Token) || !_call.ResponseStream.Current.Created)
            throw new InvalidOperationException($"{_lagName}: the watch was not created");
        _reading = Task.Run(ReadAsync);
        _requesting = Task.Run(RequestProgressAsync);
    }

    private async Task ReadAsync()
    {
        try
        {
            while (await _call!.ResponseStream.MoveNext(_stop.Token))
            {
                var response = _call.ResponseStream.Current;
                var recorder = _recorder();
                if (response.Canceled)
                {
                    recorder.Error(_lagName, new InvalidOperationException($"watch canceled: {response.CancelReason} (compact revision {response.CompactRevision})"));
                    return;
                }
                if (response.Events.Count == 0)
                {
                    if (response.CompactRevision == 0 && response.Header.Revision != 0 && _progressSent.TryDequeue(out long sent)) recorder.Record("progress", sent);
                    continue;
                }
                foreach (var e in response.Events)
                {
                    // kube-apiserver refuses a DELETE or an update without the previous object.
                    bool isCreate = e.Type == Mvccpb.Event.Types.EventType.Put && e.Kv.Version == 1;
                    if (!isCreate && e.PrevKv is null) recorder.Error(_lagName, new InvalidOperationException("etcd event received with PrevKv=nil"));
                    recorder.Record(_lagName, _client.Acks.TryGet(e.Kv.ModRevision, out long acked) && acked <= Stopwatch.GetTimestamp() ? CallRecorder.MillisecondsSince(acked) : 0);
                }
            }
        }
        catch (RpcException) when (_stop.IsCancellationRequested)
        {
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            _recorder().Error(_lagName, ex);
        }
    }

    private async Task RequestProgressAsync()
    {
        using var timer = new PeriodicTimer(ProgressEvery);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                // One outstanding request at a time: the cacher's requester waits for the answer too.
                if (!_progressSent.IsEmpty) continue;
                _progressSent.Enqueue(Stopwatch.GetTimestamp());
                await _call!.RequestStream.WriteAsync(new WatchRequest { ProgressRequest = new WatchProgressRequest() }, _stop.Token);
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            _recorder().Error("progress", ex);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_reading, _requesting);
        _call?.Dispose();
        _stop.Dispose();
    }
}
