using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// etcd's answer to a request message that does not parse: grpc-go's <c>Internal</c> "grpc: error
/// unmarshalling request: …" (a unary or server-streaming call) or "grpc: failed to unmarshal the
/// received message: …" (a message of a client stream). Grpc.AspNetCore would answer
/// <c>Unknown</c> "Exception was thrown by handler.", and a client stream's reader ended quietly
/// (the parser's exception is an IOException), so each service binds its methods through
/// <see cref="Binder"/>, which gives every request marshaller that answer.
/// </summary>
public static class UnparsableRequests
{
    /// <summary>Passes each method on to <paramref name="inner"/> with its request marshaller made to answer as etcd.</summary>
    public sealed class Binder(ServiceBinderBase inner) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
            inner.AddMethod(Rebind(method), handler);

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
            inner.AddMethod(Rebind(method), handler);

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            inner.AddMethod(Rebind(method), handler);

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            inner.AddMethod(Rebind(method), handler);

        private static Method<TRequest, TResponse> Rebind<TRequest, TResponse>(Method<TRequest, TResponse> method) where TRequest : class where TResponse : class =>
            new(method.Type, method.ServiceName, method.Name, Requests(method.RequestMarshaller, method.Type), method.ResponseMarshaller);
    }

    /// <summary>A request marshaller whose parse failures are etcd's <c>Internal</c> error for a call of this type.</summary>
    public static Marshaller<T> Requests<T>(Marshaller<T> marshaller, MethodType type) where T : class
    {
        var parse = marshaller.ContextualDeserializer;
        return new Marshaller<T>(marshaller.ContextualSerializer, context =>
        {
            try
            {
                return parse(context);
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw Refusal(ex, type);
            }
        });
    }

    /// <summary>etcd's <c>Internal</c> error for a request message of a call of this type that did not parse.</summary>
    public static RpcException Refusal(InvalidProtocolBufferException ex, MethodType type) =>
        new(new Status(StatusCode.Internal, (type is MethodType.ClientStreaming or MethodType.DuplexStreaming
            ? EtcdErrors.UnmarshalStreamMessage
            : EtcdErrors.UnmarshalRequest) + ex.Message));
}
