import Glibc
import PimeshSystem
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
        // Bound to the lead's own address (port chosen by the kernel), so that the work
        // datagrams that answer heartbeats can reach this socket from nowhere else.
        if case .loopback(let host, _) = destination {
            let bound = try LocalAddress.loopback(host: host, port: 0).withSockaddr { bind(fd, $0, $1) }
            // deinit closes fd, even when init throws here: closing it twice could take a
            // descriptor another thread has opened since.
            if bound != 0 {
                let code = errno
                throw SocketError(operation: "bind \(host):0", code: code)
            }
        }
    }

    deinit {
        close(fd)
    }

    /// Waits up to `timeoutMs` for a datagram to the socket (work from the lead arrives on the
    /// socket heartbeats leave from); nil when none came. At most `WorkDatagram.maxSize` bytes.
    public func receive(timeoutMs: Int) -> [UInt8]? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(clamping: timeoutMs)) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: WorkDatagram.maxSize + 1)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        guard count >= 0 else { return nil }
        return Array(buffer.prefix(count))
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
/// accepted without keeping a counter on disk, or from the lead's last accepted iteration when
/// it handed that over and the clock is behind it (stepped back since).
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
        iteration = max(UInt64(max(0, Clock.wallMilliseconds())) * 1000, credentials.lastAcceptedIteration ?? 0)
    }

    /// The next datagram. `timestampMs` defaults to now; the swarm back-dates it to simulate latency.
    /// With `workAck` the datagram is v2: the lead sends work to the socket it comes from.
    public mutating func next(
        state: TrinaryState, queueDepth: Int, progress: UInt64, timestampMs: Int64? = nil, workAck: WorkAck? = nil, workSlots: Int = 0
    ) -> [UInt8] {
        // Held at the top rather than trapping: the lead then drops the agent's heartbeats as
        // replays, which it reports, where a trap would crash-loop the agent.
        if iteration < .max { iteration += 1 }
        return tag.seal(
            HeartbeatDatagram(
                state: state, agentID: agentID, iteration: iteration, timestampMs: timestampMs ?? Clock.wallMilliseconds(),
                queueDepth: UInt32(clamping: max(0, queueDepth)), progress: progress, workAck: workAck,
                workSlots: UInt16(clamping: max(0, workSlots))))
    }

    /// A receiver for the work datagrams the lead signs with this agent's key.
    public func workReceiver() -> WorkReceiver {
        WorkReceiver(agentID: agentID, tag: tag)
    }
}

/// One agent's heartbeats over its own socket: what a Swift agent uses. Once the agent asks
/// for work datagrams, its heartbeats are v2 and carry what it received, and the lead sends its
/// work to this socket.
public final class HeartbeatSender: Sendable {
    public let credentials: AgentCredentials
    // Tasks of one agent may send from several threads; the iteration must never repeat.
    private let signer: Mutex<HeartbeatSigner>
    private let sender: DatagramSender
    private let receiver: Mutex<WorkReceiver>
    private let takesWorkDatagrams = Atomic<Bool>(false)
    private let workSlots = Atomic<Int>(1)
    /// What the last heartbeat reported, repeated by the one that acknowledges a datagram at once.
    private let lastReport = Mutex<(state: TrinaryState, queueDepth: Int, progress: UInt64)>((.ready, 0, 0))
    private let lastSentNs = Atomic<Int64>(0)

    public init(credentials: AgentCredentials, preferUnixSocket: Bool = false) throws {
        self.credentials = credentials
        let signer = try HeartbeatSigner(credentials: credentials)
        receiver = Mutex(signer.workReceiver())
        self.signer = Mutex(signer)
        if preferUnixSocket, let path = credentials.heartbeat.unixSocket {
            sender = try DatagramSender(destination: .unix(path: path))
        } else {
            sender = try DatagramSender(destination: .loopback(host: credentials.heartbeat.host, port: credentials.heartbeat.port))
        }
    }

    public var iteration: UInt64 { signer.withLock { $0.iteration } }

    /// From now on heartbeats are v2 and the lead sends work to this socket (UDP only: an
    /// unbound unix datagram socket cannot be answered).
    /// `slots`: tasks worked on at once (0: no limit).
    public func takeWorkDatagrams(slots: Int = 1) {
        guard case .loopback = sender.destination else { return }
        workSlots.store(slots, ordering: .relaxed)
        takesWorkDatagrams.store(true, ordering: .relaxed)
    }

    @discardableResult
    public func send(state: TrinaryState, queueDepth: Int, progress: UInt64, timestampMs: Int64? = nil) throws -> UInt64 {
        lastReport.withLock { $0 = (state, queueDepth, progress) }
        let ack = takesWorkDatagrams.load(ordering: .relaxed) ? receiver.withLock { $0.window.ack } : nil
        lastSentNs.store(Clock.monotonicNow().nanoseconds, ordering: .relaxed)
        return try signer.withLock { signer in
            try sender.send(
                signer.next(
                    state: state, queueDepth: queueDepth, progress: progress, timestampMs: timestampMs, workAck: ack,
                    workSlots: workSlots.load(ordering: .relaxed)))
            return signer.iteration
        }
    }

    /// Sends a heartbeat with the last report when none left this socket for `interval`: work
    /// datagrams go where v2 heartbeats come from, so a serving agent must keep sending them.
    public func heartbeatIfQuiet(interval: Duration) {
        guard Clock.monotonicNow().nanoseconds - lastSentNs.load(ordering: .relaxed) >= interval.wholeNanoseconds else { return }
        let report = lastReport.withLock { $0 }
        _ = try? send(state: report.state, queueDepth: report.queueDepth, progress: report.progress)
    }

    /// Waits up to `timeoutMs` for work from the lead. A new datagram is acknowledged at once
    /// with a heartbeat, so that the lead does not send it again; repeats and forgeries are dropped.
    public func receiveWork(timeoutMs: Int) -> WorkReceiver.Received? {
        guard let bytes = sender.receive(timeoutMs: timeoutMs) else { return nil }
        guard let received = receiver.withLock({ receiver in bytes.withUnsafeBytes { receiver.accept($0) } }) else { return nil }
        let report = lastReport.withLock { $0 }
        _ = try? send(state: report.state, queueDepth: report.queueDepth, progress: report.progress)
        return received
    }

    /// Datagrams refused and repeats ignored so far.
    public var workDatagramCounts: (refused: Int, duplicates: Int) {
        receiver.withLock { ($0.refused, $0.duplicates) }
    }

    /// Sends bytes as they are; tests use it for forged and malformed datagrams.
    public func sendRaw(_ bytes: [UInt8]) throws {
        try sender.send(bytes)
    }
}
