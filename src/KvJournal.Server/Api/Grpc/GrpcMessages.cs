using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Pipelines;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Server.Api.Errors;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Grpc;

/// <summary>
/// gRPC's message framing on a call's HTTP/2 body: a compressed flag, a 4-byte big-endian length,
/// the message. Requests are read from the request body pipe itself: a client that resets the
/// stream (etcd's KeepAliveOnce does after every answer) fails the pending read once, caught here.
/// Errors are grpc-go's (etcd's) codes and texts.
/// </summary>
public static class GrpcMessages
{
    private const int HeaderBytes = 5;

    /// <summary>
    /// The next request message of the call, or null once the client ended or reset the stream.
    /// A message over <paramref name="maxMessageBytes"/>, compressed other than with gzip, or that
    /// does not parse fails the call with etcd's status (<paramref name="type"/> picks the text for
    /// a message that does not parse).
    /// </summary>
    public static async ValueTask<T?> ReadAsync<T>(HttpRequest request, MessageParser<T> parser, int maxMessageBytes, MethodType type, CancellationToken cancellationToken)
        where T : class, IMessage<T>
    {
        var body = request.BodyReader;
        while (true)
        {
            ReadResult read;
            try
            {
                read = await body.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException)
            {
                return null; // the client reset the stream, or the call ended
            }
            var buffer = read.Buffer;
            if (TryTake(ref buffer, parser, maxMessageBytes, type, request, out var message))
            {
                body.AdvanceTo(buffer.Start);
                return message;
            }
            if (read.IsCompleted || read.IsCanceled)
            {
                body.AdvanceTo(buffer.End);
                // A message cut off by the end of the stream is grpc-go's "unexpected EOF".
                if (!buffer.IsEmpty) throw new RpcException(new Status(StatusCode.Internal, "grpc: failed to receive the message: unexpected EOF"));
                return null;
            }
            body.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool TryTake<T>(ref ReadOnlySequence<byte> buffer, MessageParser<T> parser, int maxMessageBytes, MethodType type, HttpRequest request, out T? message)
        where T : class, IMessage<T>
    {
        message = null;
        if (buffer.Length < HeaderBytes) return false;
        Span<byte> header = stackalloc byte[HeaderBytes];
        buffer.Slice(0, HeaderBytes).CopyTo(header);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > maxMessageBytes)
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"grpc: received message larger than max ({length} vs. {maxMessageBytes})"));
        if (buffer.Length < HeaderBytes + length) return false;
        var bytes = buffer.Slice(HeaderBytes, length);
        message = Parse(parser, header[0] == 0 ? bytes : Decompress(header[0], bytes, request, maxMessageBytes), type);
        buffer = buffer.Slice(bytes.End);
        return true;
    }

    private static ReadOnlySequence<byte> Decompress(byte flag, ReadOnlySequence<byte> message, HttpRequest request, int maxMessageBytes)
    {
        string encoding = request.Headers.GrpcEncoding.ToString();
        if (flag != 1 || encoding != "gzip")
            throw new RpcException(new Status(StatusCode.Internal, $"grpc: compressed flag set with grpc-encoding \"{encoding}\", which is not gzip"));
        using var compressed = new MemoryStream(message.ToArray());
        using var gzip = new GZipStream(compressed, CompressionMode.Decompress);
        using var plain = new MemoryStream();
        try
        {
            gzip.CopyTo(plain);
        }
        catch (InvalidDataException ex)
        {
            throw new RpcException(new Status(StatusCode.Internal, "grpc: failed to decompress the received message: " + ex.Message));
        }
        if (plain.Length > maxMessageBytes)
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"grpc: received message after decompression larger than max ({plain.Length} vs. {maxMessageBytes})"));
        return new ReadOnlySequence<byte>(plain.ToArray());
    }

    private static T Parse<T>(MessageParser<T> parser, ReadOnlySequence<byte> message, MethodType type) where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(message);
        }
        catch (InvalidProtocolBufferException ex)
        {
            // grpc-go's Internal error (etcd's), not Unknown: "error unmarshalling request" for the
            // request of a unary or server-streaming call, "failed to unmarshal" for a client stream's.
            throw new RpcException(new Status(StatusCode.Internal, (type is MethodType.ClientStreaming or MethodType.DuplexStreaming
                ? EtcdErrors.UnmarshalStreamMessage
                : EtcdErrors.UnmarshalRequest) + ex.Message));
        }
    }

    /// <summary>Writes one response message, uncompressed, into <paramref name="writer"/> (not flushed).</summary>
    public static void Write(PipeWriter writer, IMessage message)
    {
        int size = message.CalculateSize();
        if (size <= ContiguousMessageBytes)
        {
            var span = writer.GetSpan(HeaderBytes + size);
            WriteHeader(span, size);
            message.WriteTo(span.Slice(HeaderBytes, size));
            writer.Advance(HeaderBytes + size);
            return;
        }
        // A large message (a page of a list) goes into the pipe's pooled blocks as it is encoded:
        // asking the pipe for one span of its size rents an array that big from the shared
        // ArrayPool, which keeps it (and one per thread) for the life of the process.
        WriteHeader(writer.GetSpan(HeaderBytes), size);
        writer.Advance(HeaderBytes);
        message.WriteTo(writer);
    }

    // The largest message written through one contiguous span: what fits in one of Kestrel's
    // 4 KiB pool blocks beside its header.
    private const int ContiguousMessageBytes = 4096 - HeaderBytes;

    private static void WriteHeader(Span<byte> span, int size)
    {
        span[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)size);
    }
}
