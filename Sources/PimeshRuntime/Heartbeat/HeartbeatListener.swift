import Glibc
import Logging
import NIOCore
import NIOPosix
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

    /// Large enough for a burst from 1,000 agents between two reads on a loaded Pi.
    static let receiveBufferBytes = 1 << 20
    static let datagramsPerRead = 32
    /// recvmmsg calls per wake-up: 512 heartbeats, 5 ms of 10,000 agents'.
    static let readsPerWake = 16
    /// Room for each datagram of a read: above the longest heartbeat (80 bytes), so that a
    /// longer one arrives cut to this length and is still dropped as too long, not as short.
    static let slotBytes = 256

    func run() async throws {
        // No SO_REUSEADDR: on Linux it would let a second lead's UDP socket share this port.
        let bootstrap = DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(Self.receiveBufferBytes))
            // recvmmsg: one system call takes up to this many heartbeats of a burst. NIO splits
            // the receive buffer evenly between them, so it is sized for that many slots.
            .channelOption(.datagramVectorReadMessageCount, value: Self.datagramsPerRead)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.datagramsPerRead * Self.slotBytes))
            // Reads are the handler's to ask for: it coalesces them (HeartbeatHandler).
            .channelOption(.autoRead, value: false)
            .channelOption(.maxMessagesPerRead, value: UInt(Self.readsPerWake))
            .channelInitializer { [registry, tasks] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        HeartbeatHandler(registry: registry, tasks: tasks, fullRead: Self.readsPerWake * Self.datagramsPerRead))
                }
            }
        let udp = try await bootstrap.bind(host: host, port: port).get()
        let boundPort = udp.localAddress?.port ?? port
        tasks?.outlet.attach(udp)
        let unix = try unixSocketPath.map { try UnixDatagramReceiver(path: $0, receiveBufferBytes: Self.receiveBufferBytes) }
        logger.info("heartbeat listener bound", metadata: ["udp": "\(host):\(boundPort)", "unix": "\(unixSocketPath ?? "-")"])
        await readiness.heartbeatBound(port: boundPort)
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let unix {
                group.addTask { try await unix.run(registry: registry) }
            }
            try? await gracefulShutdown()
            unix?.stop()
            tasks?.outlet.detach()
            try? await udp.close()
            try await group.waitForAll()
        }
    }
}
