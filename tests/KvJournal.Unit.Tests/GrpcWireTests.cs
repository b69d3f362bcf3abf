using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Etcdserverpb;
using Google.Protobuf;
using KvJournal.Server.Api.Grpc;
using Mvccpb;
using Xunit;

namespace KvJournal.Unit.Tests;

/// <summary>The parts of gRPC's wire format the hand-bound methods write and read themselves.</summary>
public sealed class GrpcWireTests
{
    [Theory]
    [InlineData("5S", 50_000_000)]
    [InlineData("1500m", 15_000_000)]
    [InlineData("2M", 1_200_000_000)]
    [InlineData("1H", 36_000_000_000)]
    [InlineData("250000u", 2_500_000)]
    [InlineData("99999999n", 999_999)] // nanoseconds, to the 100 ns a tick holds
    [InlineData("0S", 0)]
    public void GrpcTimeoutsAreRead(string header, long ticks) => Assert.Equal(TimeSpan.FromTicks(ticks), GrpcDeadline.Parse(header));

    [Theory]
    [InlineData("")]           // absent
    [InlineData("S")]          // no digits
    [InlineData("5")]          // no unit
    [InlineData("5s")]         // no such unit
    [InlineData("-5S")]        // not a digit
    [InlineData("123456789S")] // more than 8 digits
    [InlineData("99999999H")]  // beyond what a timer can wait: as good as none
    public void MalformedOrEndlessGrpcTimeoutsMeanNoDeadline(string header) => Assert.Null(GrpcDeadline.Parse(header));

    [Theory]
    [InlineData("etcdserverpb: key not found", "etcdserverpb: key not found")]
    [InlineData("100% sure", "100%25 sure")]
    [InlineData("line\nbreak", "line%0Abreak")]
    [InlineData("naïve", "na%C3%AFve")]
    public void GrpcMessagesArePercentEncoded(string message, string sent) => Assert.Equal(sent, GrpcStatuses.PercentEncoded(message));

    [Theory]
    [InlineData(1)]     // a small answer: one span, header and message together
    [InlineData(2_000)] // a 4 MiB page of a list
    public void ResponsesAreFramedWithoutAskingForMoreThanABlock(int kvs)
    {
        var response = new RangeResponse { Header = new ResponseHeader { Revision = 7 }, Count = kvs };
        var value = ByteString.CopyFrom(new byte[2048]);
        for (int i = 0; i < kvs; i++) response.Kvs.Add(new KeyValue { Key = ByteString.CopyFromUtf8($"/registry/configmaps/{i:D6}"), Value = value, ModRevision = i });
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new SizeHintRecorder(pipe.Writer);

        GrpcMessages.Write(writer, response);
        pipe.Writer.Complete();

        // A span asked for beyond the pool's 4 KiB blocks is rented from the shared ArrayPool,
        // which keeps arrays of a page's size for the life of the process.
        Assert.InRange(writer.LargestSizeHint, 0, 4096);
        Assert.True(pipe.Reader.TryRead(out var read));
        var framed = read.Buffer.ToArray();
        Assert.Equal(0, framed[0]);
        Assert.Equal(framed.Length - 5, (int)BinaryPrimitives.ReadUInt32BigEndian(framed.AsSpan(1)));
        Assert.Equal(response, RangeResponse.Parser.ParseFrom(framed.AsSpan(5)));
    }

    private sealed class SizeHintRecorder(PipeWriter inner) : PipeWriter
    {
        public int LargestSizeHint { get; private set; }
        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(Record(sizeHint));
        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(Record(sizeHint));
        public override void Advance(int bytes) => inner.Advance(bytes);
        public override void CancelPendingFlush() => inner.CancelPendingFlush();
        public override void Complete(Exception? exception = null) => inner.Complete(exception);
        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);
        private int Record(int sizeHint)
        {
            LargestSizeHint = Math.Max(LargestSizeHint, sizeHint);
            return sizeHint;
        }
    }
}
