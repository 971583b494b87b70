import Glibc
import Synchronization
import PimeshCore

/// An unconnected datagram socket that sends to a lead's heartbeat address. One socket can
/// serve many agents (the swarm sends for a thousand through one).
public final class DatagramSender: @unchecked Sendable {
    private let fd: Int32
    public let destination: LocalAddress

    public init(destination: LocalAddress) throws {
        self.destination = destination
        fd = socket(destination.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", code: errno) }
    }

    deinit {
        close(fd)
    }

    public func send(_ bytes: [UInt8]) throws {
        let sent = try destination.withSockaddr { address, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, address, length) }
        }
        if sent < 0 { throw SocketError(operation: "send heartbeat to \(destination)", code: errno) }
    }
}

/// Signs one agent's heartbeats and keeps its iteration. The iteration starts from the wall
/// clock in microseconds, so a restarted agent process continues above what the lead last
/// accepted without keeping a counter on disk.
public struct HeartbeatSigner: Sendable {
    public let agentID: AgentID
    private let tag: HeartbeatTag
    public private(set) var iteration: UInt64

    public init(credentials: AgentCredentials) throws {
        guard let secret = credentials.secretBytes, !secret.isEmpty else {
            throw SocketError(operation: "agent \(credentials.name): the secret is not hex", code: EINVAL)
        }
        agentID = credentials.id
        tag = HeartbeatTag(secret: secret)
        iteration = UInt64(max(0, Clock.wallMilliseconds())) * 1000
    }

    /// The next datagram. `timestampMs` defaults to now; the swarm back-dates it to simulate latency.
    public mutating func next(state: TrinaryState, queueDepth: Int, progress: UInt64, timestampMs: Int64? = nil) -> [UInt8] {
        iteration += 1
        return tag.seal(
            HeartbeatDatagram(
                state: state, agentID: agentID, iteration: iteration, timestampMs: timestampMs ?? Clock.wallMilliseconds(),
                queueDepth: UInt32(clamping: max(0, queueDepth)), progress: progress))
    }
}

/// One agent's heartbeats over its own socket: what a Swift agent uses.
public final class HeartbeatSender: Sendable {
    public let credentials: AgentCredentials
    // Tasks of one agent may send from several threads; the iteration must never repeat.
    private let signer: Mutex<HeartbeatSigner>
    private let sender: DatagramSender

    public init(credentials: AgentCredentials, preferUnixSocket: Bool = false) throws {
        self.credentials = credentials
        signer = Mutex(try HeartbeatSigner(credentials: credentials))
        if preferUnixSocket, let path = credentials.heartbeat.unixSocket {
            sender = try DatagramSender(destination: .unix(path: path))
        } else {
            sender = try DatagramSender(destination: .loopback(host: credentials.heartbeat.host, port: credentials.heartbeat.port))
        }
    }

    public var iteration: UInt64 { signer.withLock { $0.iteration } }

    @discardableResult
    public func send(state: TrinaryState, queueDepth: Int, progress: UInt64, timestampMs: Int64? = nil) throws -> UInt64 {
        try signer.withLock { signer in
            try sender.send(signer.next(state: state, queueDepth: queueDepth, progress: progress, timestampMs: timestampMs))
            return signer.iteration
        }
    }

    /// Sends bytes as they are; tests use it for forged and malformed datagrams.
    public func sendRaw(_ bytes: [UInt8]) throws {
        try sender.send(bytes)
    }
}

/// Wall and monotonic time for the shell and agents, from clock_gettime.
public enum Clock {
    public static func wallMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    public static func monotonicNow() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}
