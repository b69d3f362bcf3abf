using System.Diagnostics.CodeAnalysis;
using Grpc.Core;
using KvJournal.Journal;
using KvJournal.Storage.Apply;

namespace KvJournal.Server.Api.Errors;

/// <summary>An etcd error as a gRPC status, from the one table (<see cref="EtcdErrorTable"/>).</summary>
public static class EtcdErrors
{
    public static Status ToStatus(EtcdError error) => ToStatus(EtcdErrorTable.Describe(error));

    public static Status ToStatus(EtcdStatus status) => new((StatusCode)status.Code, status.Message);

    /// <summary>
    /// The status a call that threw <paramref name="ex"/> ends with: the face's errors through the
    /// one table (a journal that could not be reached is etcd's unavailable error), an
    /// <see cref="RpcException"/>'s own status; null for anything else (the caller decides).
    /// </summary>
    public static Status? StatusOf(Exception ex) => ex switch
    {
        EtcdException etcd => ToStatus(etcd.Status),
        JournalUnavailableException => ToStatus(EtcdError.JournalUnavailable),
        RpcException rpc => rpc.Status,
        _ => null,
    };

    [DoesNotReturn]
    public static void Throw(EtcdError error) => throw new RpcException(ToStatus(error));

    /// <summary>The error as an exception to throw (for expressions: <c>?? throw EtcdErrors.Exception(...)</c>).</summary>
    public static RpcException Exception(EtcdError error) => new(ToStatus(error));

    /// <summary>grpc-go's answer to a request message that does not parse (GrpcMessages), before the parser's own text.</summary>
    public const string UnmarshalRequest = "grpc: error unmarshalling request: ";

    /// <summary>The same for a message of a client stream.</summary>
    public const string UnmarshalStreamMessage = "grpc: failed to unmarshal the received message: ";
}
