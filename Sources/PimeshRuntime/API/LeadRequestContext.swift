import Hummingbird
import NIOCore

/// Each API request's context: who is calling (set by `BearerAuthentication`) and whether it
/// came over the unix socket, where the peer's uid can stand in for a token (SO_PEERCRED).
struct LeadRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    var caller: Caller = .anonymous

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    var overUnixSocket: Bool {
        if case .unixDomainSocket = channel.localAddress { return true }
        return false
    }
}
