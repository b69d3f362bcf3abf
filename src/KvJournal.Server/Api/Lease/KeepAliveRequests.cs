using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Pipelines;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using KvJournal.Server.Api.Errors;

namespace KvJournal.Server.Api.Lease;

/// <summary>
/// LeaseKeepAlive's request messages read from the request body pipe itself, in gRPC's framing
/// (a compressed flag, a 4-byte big-endian length, the message), instead of through
/// Grpc.AspNetCore's stream reader. etcd's KeepAliveOnce, and its benchmark, open a stream per
/// renewal and reset it after the answer; Kestrel reports that reset as an exception from the
/// pending read, and through the stream reader it was rethrown by every async frame above it.
/// Here it is caught where it is thrown, once per stream.
/// </summary>
public sealed class KeepAliveRequests(PipeReader body, int maxMessageBytes, string? encoding)
{
    private const int HeaderBytes = 5;

    /// <summary>The next request, or null once the client ended or reset the stream.</summary>
    public async ValueTask<LeaseKeepAliveRequest?> NextAsync(CancellationToken cancellationToken)
    {
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
            if (TryTakeMessage(ref buffer, out var request))
            {
                body.AdvanceTo(buffer.Start);
                return request;
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

    private bool TryTakeMessage(ref ReadOnlySequence<byte> buffer, out LeaseKeepAliveRequest? request)
    {
        request = null;
        if (buffer.Length < HeaderBytes) return false;
        Span<byte> header = stackalloc byte[HeaderBytes];
        buffer.Slice(0, HeaderBytes).CopyTo(header);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > maxMessageBytes)
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"grpc: received message larger than max ({length} vs. {maxMessageBytes})"));
        if (buffer.Length < HeaderBytes + length) return false;
        var message = buffer.Slice(HeaderBytes, length);
        request = Parse(header[0] == 0 ? message : Decompress(header[0], message));
        buffer = buffer.Slice(message.End);
        return true;
    }

    private ReadOnlySequence<byte> Decompress(byte flag, ReadOnlySequence<byte> message)
    {
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

    private static LeaseKeepAliveRequest Parse(ReadOnlySequence<byte> message)
    {
        try
        {
            return LeaseKeepAliveRequest.Parser.ParseFrom(message);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw UnparsableRequests.Refusal(ex, MethodType.DuplexStreaming);
        }
    }
}
