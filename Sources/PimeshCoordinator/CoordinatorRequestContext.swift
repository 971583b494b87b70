import Hummingbird
import NIOCore

/// Each request's context, with the peer's address: reads that come before a node can be told
/// from an outsider (an incident's signature covers its whole body) are counted by address.
struct CoordinatorRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The peer's IP address without its port; "" when the channel has none.
    let peer: String

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress ?? ""
    }
}
