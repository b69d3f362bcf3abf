using Etcdserverpb;
using Grpc.Core;
using KvJournal.Member.Face;
using KvJournal.Server.Api.Errors;
using KvJournal.Server.Hosting;

namespace KvJournal.Server.Api.Auth;

/// <summary>etcd's Auth service: an adapter from gRPC to the shard's face (errors are mapped by <see cref="EtcdCallInterceptor"/>).</summary>
[BindServiceMethod(typeof(AuthService), nameof(BindService))]
public sealed class AuthService(ShardRouter router, ServerOptions options) : Etcdserverpb.Auth.AuthBase
{
    /// <summary>Binds the generated methods with etcd's answer to a request that does not parse (<see cref="UnparsableRequests"/>).</summary>
    public static void BindService(ServiceBinderBase binder, Etcdserverpb.Auth.AuthBase? service) =>
        Etcdserverpb.Auth.BindService(new UnparsableRequests.Binder(binder), service!);

    public override Task<AuthEnableResponse> AuthEnable(AuthEnableRequest request, ServerCallContext context) =>
        router.For(context).AuthEnableAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthDisableResponse> AuthDisable(AuthDisableRequest request, ServerCallContext context) =>
        router.For(context).AuthDisableAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthStatusResponse> AuthStatus(AuthStatusRequest request, ServerCallContext context) =>
        router.For(context).AuthStatusAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthenticateResponse> Authenticate(AuthenticateRequest request, ServerCallContext context) =>
        router.For(context).AuthenticateAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserAddResponse> UserAdd(AuthUserAddRequest request, ServerCallContext context) =>
        router.For(context).UserAddAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserGetResponse> UserGet(AuthUserGetRequest request, ServerCallContext context) =>
        router.For(context).UserGetAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserListResponse> UserList(AuthUserListRequest request, ServerCallContext context) =>
        router.For(context).UserListAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserDeleteResponse> UserDelete(AuthUserDeleteRequest request, ServerCallContext context) =>
        router.For(context).UserDeleteAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserChangePasswordResponse> UserChangePassword(AuthUserChangePasswordRequest request, ServerCallContext context) =>
        router.For(context).UserChangePasswordAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserGrantRoleResponse> UserGrantRole(AuthUserGrantRoleRequest request, ServerCallContext context) =>
        router.For(context).UserGrantRoleAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthUserRevokeRoleResponse> UserRevokeRole(AuthUserRevokeRoleRequest request, ServerCallContext context) =>
        router.For(context).UserRevokeRoleAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleAddResponse> RoleAdd(AuthRoleAddRequest request, ServerCallContext context) =>
        router.For(context).RoleAddAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleGetResponse> RoleGet(AuthRoleGetRequest request, ServerCallContext context) =>
        router.For(context).RoleGetAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleListResponse> RoleList(AuthRoleListRequest request, ServerCallContext context) =>
        router.For(context).RoleListAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleDeleteResponse> RoleDelete(AuthRoleDeleteRequest request, ServerCallContext context) =>
        router.For(context).RoleDeleteAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleGrantPermissionResponse> RoleGrantPermission(AuthRoleGrantPermissionRequest request, ServerCallContext context) =>
        router.For(context).RoleGrantPermissionAsync(request, Who(context), context.CancellationToken);

    public override Task<AuthRoleRevokePermissionResponse> RoleRevokePermission(AuthRoleRevokePermissionRequest request, ServerCallContext context) =>
        router.For(context).RoleRevokePermissionAsync(request, Who(context), context.CancellationToken);

    private CallerIdentity Who(ServerCallContext context) => CallerIdentities.Of(context, router.For(context), options.ClientCertAuth);
}
