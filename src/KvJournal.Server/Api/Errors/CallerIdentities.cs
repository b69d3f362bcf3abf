using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using KvJournal.Member.Face;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// Who a gRPC call says it is (etcd's AuthInfoFromCtx): the simple token in the "token" metadata
/// (or "authorization"), and under --client-cert-auth the common name of the client certificate.
/// With auth off nothing is read: building a call's Metadata copies every header.
/// </summary>
public static class CallerIdentities
{
    public static CallerIdentity Of(ServerCallContext context, ShardServer face, bool clientCertAuth)
    {
        if (!face.AuthEnabled) return CallerIdentity.None;
        string? token = context.RequestHeaders.GetValue("token") ?? context.RequestHeaders.GetValue("authorization");
        string? certificate = clientCertAuth && context.GetHttpContext().Connection.ClientCertificate is { } cert
            ? cert.GetNameInfo(X509NameType.SimpleName, forIssuer: false)
            : null;
        return new CallerIdentity(token, certificate);
    }
}
