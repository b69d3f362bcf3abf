using KvJournal.Server.Api.Grpc;
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
}
