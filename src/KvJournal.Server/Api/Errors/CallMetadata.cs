using System.Security.Cryptography.X509Certificates;
using KvJournal.Member.Face;
using Microsoft.AspNetCore.Http;

namespace KvJournal.Server.Api.Errors;

/// <summary>
/// What a gRPC call's metadata (its HTTP/2 headers) tells etcd: who makes it (etcd's
/// AuthInfoFromCtx: the simple token in "token" or "authorization", and under --client-cert-auth
/// the common name of the client certificate) and whether it requires a leader. Read from the
/// headers directly: building a call's Metadata copies every header, on every call.
/// </summary>
public static class CallMetadata
{
    private const string RequireLeaderKey = "hasleader";

    /// <summary>The caller; with auth off nothing is read.</summary>
    public static CallerIdentity Who(HttpContext http, ShardServer face, bool clientCertAuth)
    {
        if (!face.AuthEnabled) return CallerIdentity.None;
        var headers = http.Request.Headers;
        string? token = First(headers["token"]) ?? First(headers.Authorization);
        string? certificate = clientCertAuth && http.Connection.ClientCertificate is { } cert
            ? cert.GetNameInfo(X509NameType.SimpleName, forIssuer: false)
            : null;
        return new CallerIdentity(token, certificate);
    }

    /// <summary>True when the call asked for a leader (etcd clients' WithRequireLeader, kube-apiserver's watches).</summary>
    public static bool RequiresLeader(HttpRequest request) => request.Headers[RequireLeaderKey] == "true";

    private static string? First(Microsoft.Extensions.Primitives.StringValues values) => values.Count > 0 ? values[0] : null;
}
