using Etcdserverpb;

namespace KvJournal.Server.Api.Unimplemented;

// Services whose RPCs are declared but not served yet: the generated bases answer every call
// with gRPC Unimplemented at once, so clients get a clear status instead of a hang.

public sealed class AuthService : Auth.AuthBase;
