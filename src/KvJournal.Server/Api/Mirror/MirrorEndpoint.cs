using KvJournal.Member.Face;
using KvJournal.Member.Mirror;
using KvJournal.Server.Api.Gateway;
using KvJournal.Server.Hosting;
using KvJournal.Storage.Apply;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace KvJournal.Server.Api.Mirror;

/// <summary>
/// The cut-over of a mirror (kvjournal mirror), on the client port of the mirroring member:
/// `POST /mirror/cut-over?revision=N`, as an admin (the Authorization header carries a token, as
/// on the JSON gateway) when auth is on. 200 with what was done, or 409 with why it was refused.
/// </summary>
public static class MirrorEndpoint
{
    private const string TextPlain = "text/plain; charset=utf-8";

    public static void Map(IEndpointRouteBuilder app, MirrorFollower follower)
    {
        app.MapPost("/mirror/cut-over", async (ShardRouter router, HttpContext http) =>
        {
            var face = router.For(http);
            http.Response.ContentType = TextPlain;
            if (!ReferenceEquals(face, follower.Face))
            {
                http.Response.StatusCode = StatusCodes.Status404NotFound;
                await http.Response.WriteAsync("only the default keyspace mirrors etcd\n").ConfigureAwait(false);
                return;
            }
            if (!long.TryParse(http.Request.Query["revision"], out long revision) || revision <= 0)
            {
                http.Response.StatusCode = StatusCodes.Status400BadRequest;
                await http.Response.WriteAsync("name the revision to cut over at: /mirror/cut-over?revision=N\n").ConfigureAwait(false);
                return;
            }
            try
            {
                face.CheckMirrorAdmin(new GatewayCall(http).Who(face));
                if (face.MirrorSource is null) throw new EtcdException(EtcdError.NotMirroring);
            }
            catch (EtcdException ex)
            {
                http.Response.StatusCode = ex.Error == EtcdError.NotMirroring ? StatusCodes.Status409Conflict : StatusCodes.Status403Forbidden;
                await http.Response.WriteAsync(ex.Message + "\n").ConfigureAwait(false);
                return;
            }
            var result = await follower.CutOverAsync(revision, http.RequestAborted).ConfigureAwait(false);
            http.Response.StatusCode = result.Done ? StatusCodes.Status200OK : StatusCodes.Status409Conflict;
            await http.Response.WriteAsync(result.Message + "\n").ConfigureAwait(false);
        });
    }
}
