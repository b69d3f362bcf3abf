using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Protos.Wire;
using KvJournal.Server.Api.Errors;

namespace KvJournal.Server.Api.Watch;

/// <summary>
/// etcdserverpb.Watch/Watch bound by hand instead of through the generated base class: responses
/// go out as <see cref="WatchResponseFrame"/>, wire-identical to etcdserverpb.WatchResponse but
/// carrying each event pre-encoded, so fan-out to many watchers copies bytes instead of
/// re-encoding every event for every watcher.
/// </summary>
[BindServiceMethod(typeof(WatchServiceBase), nameof(BindService))]
public abstract class WatchServiceBase
{
    private static readonly Method<WatchRequest, WatchResponseFrame> WatchMethod = new(
        MethodType.DuplexStreaming, "etcdserverpb.Watch", "Watch",
        UnparsableRequests.Requests(ProtobufMarshaller(WatchRequest.Parser), MethodType.DuplexStreaming), ProtobufMarshaller(WatchResponseFrame.Parser));

    public abstract Task Watch(IAsyncStreamReader<WatchRequest> requestStream, IServerStreamWriter<WatchResponseFrame> responseStream, ServerCallContext context);

    /// <summary>ASP.NET Core calls this with a null instance and resolves the override of <see cref="Watch"/> per call.</summary>
    public static void BindService(ServiceBinderBase binder, WatchServiceBase? service) =>
        binder.AddMethod(WatchMethod, service is null ? null : service.Watch);

    private static Marshaller<T> ProtobufMarshaller<T>(MessageParser<T> parser) where T : IMessage<T> => new(
        (message, context) =>
        {
            context.SetPayloadLength(message.CalculateSize());
            message.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        context => parser.ParseFrom(context.PayloadAsReadOnlySequence()));
}
