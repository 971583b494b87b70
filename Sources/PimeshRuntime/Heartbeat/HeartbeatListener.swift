import Glibc
import Logging
import PimeshSystem
import ServiceLifecycle

/// Receives heartbeats on loopback UDP and, for containers, on a unix datagram socket in
/// the run directory. Binds at start, reports its addresses, closes on shutdown.
struct HeartbeatListener: Service {
    let registry: AgentRegistry
    /// Told of each accepted heartbeat, and sends work datagrams through this socket.
    var tasks: TaskService? = nil
    let host: String
    let port: Int
    let unixSocketPath: String?
    let readiness: ReadinessGate
    let logger: Logger

    func run() async throws {
        let udp = try HeartbeatSocket.bind(host: host, port: port)
        let unix = try unixSocketPath.map { try UnixDatagramReceiver(path: $0, receiveBufferBytes: HeartbeatSocket.receiveBufferBytes) }
        // Only once both are bound: work must not leave through a socket no one reads.
        tasks?.outlet.attach(udp)
        logger.info("heartbeat listener bound", metadata: ["udp": "\(host):\(udp.port)", "unix": "\(unixSocketPath ?? "-")"])
        await readiness.heartbeatBound(port: udp.port)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [registry, tasks] in
                try await udp.run { bytes, peer in
                    let outcome = registry.ingest(bytes, now: Clock.monotonicNow(), nowWallMs: Clock.wallMilliseconds())
                    if let tasks, case .acceptedWithAck(let agent, let ack, let slots) = outcome {
                        tasks.heard(agent: agent, ack: ack, slots: slots, from: peer)
                    }
                }
            }
            if let unix {
                group.addTask { try await unix.run(registry: registry) }
            }
            try? await gracefulShutdown()
            unix?.stop()
            tasks?.outlet.detach()
            udp.stop()
            try await group.waitForAll()
        }
    }
}
