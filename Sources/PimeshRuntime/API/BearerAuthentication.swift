import Glibc
import Hummingbird
import NIOCore
import PimeshAgent
import PimeshServer

/// Decides who calls (issue 12): `Authorization: Bearer <operator token | join token |
/// agent.<id>.<credential>>`, or, on the unix socket only and with no header, the peer's uid
/// from SO_PEERCRED when it is root, the lead's own user or a member of the operator group.
struct BearerAuthentication: RouterMiddleware {
    typealias Context = LeadRequestContext

    let tokens: LeadTokens
    let registry: AgentRegistry
    let operators: OperatorPeers

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let prefix = "Bearer "
            guard header.hasPrefix(prefix) else {
                return APIError(status: .unauthorized, message: "the Authorization header must be 'Bearer <token>'").response
            }
            let presented = header.dropFirst(prefix.count)
            if let (id, mac) = AgentAPICredential.parse(presented) {
                guard registry.verifiesCredential(of: id, mac: mac) else {
                    return APIError(status: .unauthorized, message: "wrong agent credential for \(id)").response
                }
                context.caller = .agent(id)
            } else if let kind = tokens.kind(of: presented.utf8) {
                context.caller = kind == .operator ? .operator(via: "token") : .join
            } else {
                return APIError(status: .unauthorized, message: "wrong bearer token").response
            }
        } else if context.overUnixSocket, let peer = await Self.peer(of: context.channel), operators.allows(uid: peer.uid, gid: peer.gid) {
            context.caller = .operator(via: "uid \(peer.uid)")
        } else {
            return APIError(
                status: .unauthorized,
                message: "missing bearer token: send 'Authorization: Bearer <contents of the node-token file>'"
                    + (context.overUnixSocket ? " (or connect as root or a member of the \(operators.groupName) group)" : "")
            ).response
        }
        return try await next(request, context)
    }

    static func peer(of channel: any Channel) async -> (uid: uid_t, gid: gid_t)? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        guard let credentials: PeerCredentials = try? await provider.unsafeGetSocketOption(level: NIOBSDSocket.OptionLevel.socket, name: NIOBSDSocket.Option(rawValue: SO_PEERCRED)).get()
        else { return nil }
        return (credentials.uid, credentials.gid)
    }

    /// `struct ucred` of <sys/socket.h>, which Glibc exports only under _GNU_SOURCE: the kernel
    /// fills pid, uid, gid as three 32-bit fields.
    struct PeerCredentials: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }
}

/// Operator routes for the rest of /v1: heal, freeze, quarantine, tasks, snapshots, tokens…
struct RequireOperator: RouterMiddleware {
    typealias Context = LeadRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard context.caller.isOperator else {
            return APIError(
                status: .forbidden,
                message: "\(context.caller.label) may not call \(request.method) \(request.uri.path): it is an operator route (docs/api.md)"
            ).response
        }
        return try await next(request, context)
    }
}
