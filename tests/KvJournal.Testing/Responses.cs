using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace KvJournal.Testing;

/// <summary>Calls one RPC and captures its answer or its gRPC status, for side-by-side comparison.</summary>
public static class Responses
{
    public sealed record Outcome(IMessage? Response, StatusCode Code, string Detail)
    {
        public override string ToString() => Response is null
            ? $"error {Code}: {Detail}"
            : JsonFormatter.Default.Format(Response);
    }

    public static async Task<Outcome> CaptureAsync<T>(Func<Task<T>> call) where T : IMessage
    {
        try
        {
            var response = await call();
            return new Outcome(WithoutMemberFields(response), StatusCode.OK, "");
        }
        catch (RpcException ex)
        {
            return new Outcome(null, ex.StatusCode, ex.Status.Detail);
        }
    }

    /// <summary>
    /// Clears the top-level header's cluster id, member id and raft term, which legitimately differ
    /// between two servers; revisions and everything else must match.
    /// </summary>
    public static T WithoutMemberFields<T>(T response) where T : IMessage
    {
        var copy = response.Clone();
        var field = copy.Descriptor.FindFieldByName("header");
        if (field?.Accessor.GetValue(copy) is ResponseHeader h)
        {
            h.ClusterId = 0;
            h.MemberId = 0;
            h.RaftTerm = 0;
        }
        return copy;
    }
}

internal static class MessageCloneExtensions
{
    public static T Clone<T>(this T message) where T : IMessage
    {
        var copy = (T)message.Descriptor.Parser.ParseFrom(message.ToByteArray());
        return copy;
    }
}
