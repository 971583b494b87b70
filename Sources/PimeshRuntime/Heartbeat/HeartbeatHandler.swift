import NIOCore
import PimeshAgent

/// Hands each datagram's bytes to the registry straight from NIO's receive buffer: no copy,
/// no task, no per-datagram state (DESIGN.md §3).
final class HeartbeatHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let registry: AgentRegistry

    init(registry: AgentRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        envelope.data.withUnsafeReadableBytes { bytes in
            _ = registry.ingest(bytes, now: Clock.monotonicNow(), nowWallMs: Clock.wallMilliseconds())
        }
    }

    // A datagram socket error (ICMP noise, a truncated read) must never close the listener.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
