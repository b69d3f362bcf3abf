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
    /// grpc-go's refusal of a call whose grpc-encoding it cannot decompress (only gzip is installed
    /// in etcd), given before any message is read; null when the encoding is served.
    /// </summary>
    public static Status? UnsupportedEncoding(HttpRequest request)
    {
        string encoding = request.Headers.GrpcEncoding.ToString();
        return encoding is "" or Identity or Gzip
            ? null
            : new Status(StatusCode.Unimplemented, $"grpc: Decompressor is not installed for grpc-encoding \"{encoding}\"");
    }

    /// <summary>
    /// The next request message of the call, or null once the client ended its side (a header cut
    /// short counts as ended, as in grpc-go) or reset the stream. A message over
    /// <paramref name="maxMessageBytes"/>, cut short, compressed without gzip, or that does not
    /// parse fails the call with etcd's status; <paramref name="type"/> picks the code or text where
    /// grpc-go's differ between a unary call's request and a stream's.
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
                // A message cut off by the end of the stream: io.ErrUnexpectedEOF, which grpc-go
                // reports as Unknown for a unary request and as Internal on a stream.
                if (buffer.Length >= HeaderBytes)
                    throw new RpcException(new Status(type == MethodType.Unary ? StatusCode.Unknown : StatusCode.Internal, "unexpected EOF"));
                return null;
            }
            body.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private const string Identity = "identity";
    private const string Gzip = "gzip";

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
        message = Parse(parser, header[0] switch
        {
            0 => bytes,
            1 => Decompress(bytes, request, maxMessageBytes),
            var flag => throw new RpcException(new Status(StatusCode.Internal, $"grpc: received unexpected payload format {flag}")),
        }, type);
        buffer = buffer.Slice(bytes.End);
        return true;
    }

    private static ReadOnlySequence<byte> Decompress(ReadOnlySequence<byte> message, HttpRequest request, int maxMessageBytes)
    {
        // Any encoding but these was refused before the call began (UnsupportedEncoding).
        if (request.Headers.GrpcEncoding.ToString() is "" or Identity)
            throw new RpcException(new Status(StatusCode.Internal, "grpc: compressed flag set with identity or empty encoding"));
        if (GzipHeaderProblem(message) is { } problem)
            throw new RpcException(new Status(StatusCode.Internal, DecompressFailed + problem));
        using var compressed = new MemoryStream(message.ToArray());
        using var gzip = new GZipStream(compressed, CompressionMode.Decompress);
        using var plain = new MemoryStream();
        try
        {
            gzip.CopyTo(plain);
        }
        catch (InvalidDataException ex)
        {
            throw new RpcException(new Status(StatusCode.Internal, DecompressFailed + ex.Message));
        }
        if (plain.Length > maxMessageBytes)
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"grpc: received message after decompression larger than max ({plain.Length} vs. {maxMessageBytes})"));
        return new ReadOnlySequence<byte>(plain.ToArray());
    }

    private const string DecompressFailed = "grpc: failed to decompress the message: ";

    // What Go's gzip reader says of a gzip header it cannot read (its 10 bytes, the magic and the
    // deflate method), so the commonest bad input gets etcd's words; beyond that .NET's are given.
    private static string? GzipHeaderProblem(ReadOnlySequence<byte> message)
    {
        if (message.IsEmpty) return "EOF";
        if (message.Length < 10) return "unexpected EOF";
        Span<byte> magic = stackalloc byte[3];
        message.Slice(0, 3).CopyTo(magic);
        return magic is [0x1f, 0x8b, 8] ? null : "gzip: invalid header";
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
