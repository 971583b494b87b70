import Glibc
import NIOPosix
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// Runs the seed 000 liveness probes of the agents whose manifests ask for one: an HTTP GET on
/// a loopback port, at most one in flight per agent, on two threads of their own so that an
/// agent that answers slowly (or never) holds a probe thread for at most the timeout and never
/// the health tick.
final class LivenessProber: Sendable {
    struct Target: Sendable, Equatable {
        var id: AgentID
        var name: String
        var probe: AgentManifest.Probe
        /// When its process started (nil for an attached agent): a new process is probed afresh.
        var processStartedAt: Instant?
    }

    private struct Entry: Sendable {
        var processStartedAt: Instant?
        var probe: LivenessProbe
    }

    /// Started with the first probe: a lead with no probe has no probe threads.
    private let pool: Mutex<NIOThreadPool?>
    private let probes: Mutex<[AgentID: Entry]>
    private let registry: AgentRegistry

    init(registry: AgentRegistry) {
        self.registry = registry
        pool = Mutex(nil)
        probes = Mutex([:])
    }

    /// Starts the probes that are due; `targets` are the agents that have one now.
    func startDue(_ targets: [Target], at now: Instant) {
        let starting = probes.withLock { probes -> [Target] in
            let wanted = Set(targets.map(\.id))
            probes = probes.filter { wanted.contains($0.key) }
            return targets.filter { target in
                var entry = probes[target.id].flatMap {
                    $0.probe.settings == target.probe.settings && $0.processStartedAt == target.processStartedAt ? $0 : nil
                } ?? Entry(
                    processStartedAt: target.processStartedAt,
                    probe: LivenessProbe(settings: target.probe.settings, processSince: target.processStartedAt ?? now))
                defer { probes[target.id] = entry }
                return entry.probe.start(at: now)
            }
        }
        guard !starting.isEmpty else { return }
        let pool = self.pool.withLock { pool in
            if let pool { return pool }
            let started = NIOThreadPool(numberOfThreads: 2)
            started.start()
            pool = started
            return started
        }
        for target in starting {
            pool.submit { [self] _ in
                let started = Clock.monotonicNow()
                let answer = Self.status(of: target.probe, timeout: target.probe.settings.timeout)
                let finished = Clock.monotonicNow()
                let judged = LivenessProbe.judge(
                    status: answer.status, latency: finished - started, error: answer.error, timeout: target.probe.settings.timeout)
                // A probe of a process that has since been replaced says nothing about the new one.
                let verdict = probes.withLock { probes -> LivenessProbe.Verdict? in
                    guard var entry = probes[target.id], entry.processStartedAt == target.processStartedAt else { return nil }
                    defer { probes[target.id] = entry }
                    return entry.probe.finish(judged, at: finished)
                }
                if let verdict { registry.recordLivenessProbe(of: target.id, verdict, at: finished) }
            }
        }
    }


    /// The status code of `GET path`, reading no more than the status line: the probe needs
    /// nothing else, and an agent cannot make the lead buffer a body.
    static func status(of probe: AgentManifest.Probe, timeout: Duration) -> (status: Int?, error: String?) {
        let deadline = Clock.monotonicNow() + timeout
        func remainingMs() -> Int { max(0, Int((deadline - Clock.monotonicNow()).milliseconds.rounded(.up))) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (nil, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        setTimeouts(fd, milliseconds: max(1, remainingMs()))
        do {
            try probe.address.withSockaddr { pointer, length in
                guard connect(fd, pointer, length) == 0 else { throw SocketError(operation: "connect to \(probe.address)", code: errno) }
            }
        } catch {
            return (nil, "\(error)")
        }
        let request = Array("GET \(probe.path) HTTP/1.1\r\nHost: \(probe.address)\r\nConnection: close\r\nUser-Agent: pimesh-liveness\r\n\r\n".utf8)
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { return (nil, "send: \(String(cString: strerror(errno)))") }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 256 {
            let left = remainingMs()
            guard left > 0 else { return (nil, "no status line within \(Int64(timeout.milliseconds)) ms") }
            setTimeouts(fd, milliseconds: left)
            let n = recv(fd, &byte, 1, 0)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else {
                return (nil, n == 0 ? "connection closed before a status line" : "receive: \(String(cString: strerror(errno)))")
            }
            if byte == 10 { break }
            line.append(byte)
        }
        if line.last == 13 { line.removeLast() }
        let parts = String(decoding: line, as: UTF8.self).split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]), (100...599).contains(status) else {
            return (nil, "not an HTTP status line")
        }
        return (status, nil)
    }
}
