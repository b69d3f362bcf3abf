using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Auth;

/// <summary>etcd's Auth service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdErrorInterceptor"/>).</summary>
[BindServiceMethod(typeof(AuthService), nameof(BindService))]
public sealed class AuthService(ShardServer face, ServerOptions options) : Etcdserverpb.Auth.AuthBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Auth.AuthBase? service) =>
        Etcdserverpb.Auth.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<AuthEnableResponse> AuthEnable(AuthEnableRequest request, ServerCallContext context) =>
        face.AuthEnableAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthDisableResponse> AuthDisable(AuthDisableRequest request, ServerCallContext context) =>
        face.AuthDisableAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthStatusResponse> AuthStatus(AuthStatusRequest request, ServerCallContext context) =>
        face.AuthStatusAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthenticateResponse> Authenticate(AuthenticateRequest request, ServerCallContext context) =>
        face.AuthenticateAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserAddResponse> UserAdd(AuthUserAddRequest request, ServerCallContext context) =>
        face.UserAddAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserGetResponse> UserGet(AuthUserGetRequest request, ServerCallContext context) =>
        face.UserGetAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserListResponse> UserList(AuthUserListRequest request, ServerCallContext context) =>
        face.UserListAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserDeleteResponse> UserDelete(AuthUserDeleteRequest request, ServerCallContext context) =>
        face.UserDeleteAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserChangePasswordResponse> UserChangePassword(AuthUserChangePasswordRequest request, ServerCallContext context) =>
        face.UserChangePasswordAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserGrantRoleResponse> UserGrantRole(AuthUserGrantRoleRequest request, ServerCallContext context) =>
        face.UserGrantRoleAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserRevokeRoleResponse> UserRevokeRole(AuthUserRevokeRoleRequest request, ServerCallContext context) =>
        face.UserRevokeRoleAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleAddResponse> RoleAdd(AuthRoleAddRequest request, ServerCallContext context) =>
        face.RoleAddAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleGetResponse> RoleGet(AuthRoleGetRequest request, ServerCallContext context) =>
        face.RoleGetAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleListResponse> RoleList(AuthRoleListRequest request, ServerCallContext context) =>
        face.RoleListAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleDeleteResponse> RoleDelete(AuthRoleDeleteRequest request, ServerCallContext context) =>
        face.RoleDeleteAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleGrantPermissionResponse> RoleGrantPermission(AuthRoleGrantPermissionRequest request, ServerCallContext context) =>
        face.RoleGrantPermissionAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleRevokePermissionResponse> RoleRevokePermission(AuthRoleRevokePermissionRequest request, ServerCallContext context) =>
        face.RoleRevokePermissionAsync(request, Who(context), context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, face, options.ClientCertAuth);
}
