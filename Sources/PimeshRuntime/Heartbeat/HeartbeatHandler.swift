import NIOCore
import PimeshAgent
import PimeshSystem

/// Hands each datagram's bytes to the registry straight from NIO's receive buffer: no copy,
/// no task, no per-datagram state (DESIGN.md §3).
final class HeartbeatHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let registry: AgentRegistry
    private let tasks: TaskService?

    init(registry: AgentRegistry, tasks: TaskService? = nil) {
        self.registry = registry
        self.tasks = tasks
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let outcome = envelope.data.withUnsafeReadableBytes { bytes in
            registry.ingest(bytes, now: Clock.monotonicNow(), nowWallMs: Clock.wallMilliseconds())
        }
        guard let tasks else { return }
        switch outcome {
        case .acceptedWithAck(let agent, let ack, let slots):
            tasks.heard(agent: agent, ack: ack, slots: slots, from: envelope.remoteAddress)
        case .accepted, .dropped:
            break
        }
    }

    // A datagram socket error (ICMP noise, a truncated read) must never close the listener.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
