import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem

/// Heartbeat ingestion without sockets: a registry of agents and prepared datagrams of one kind
/// fed straight to `AgentRegistry.ingest`. `pimesh bench ingest` runs it; under valgrind it
/// counts allocations per datagram (benchmarks/ingest-allocations.sh).
public struct IngestBenchmark: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case accepted, short, long, unknownVersion = "unknown_version", malformed
        case unknownAgent = "unknown_agent", badTag = "bad_tag", replayed, stale
    }

    public let kind: Kind
    public let agents: Int
    private let registry: AgentRegistry
    /// All datagrams back to back in one buffer, so that setup allocates the same whatever the count.
    private let datagrams: [UInt8]
    private let datagramLength: Int
    private let distinct: Int
    private let wallNow: Int64

    @_optimize(size)  // cold: `pimesh bench ingest` (the 25 MB budget)
    public init(kind: Kind, count: Int, agents: Int = 100) throws {
        self.kind = kind
        self.agents = agents
        wallNow = Clock.wallMilliseconds()
        let registry = AgentRegistry()
        self.registry = registry
        var signers: [HeartbeatSigner] = []
        var rng = SplitMix64(seed: 1)
        for index in 0..<agents {
            let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let row = AgentRow(
                id: AgentID.random(using: &rng), name: "bench-\(index)", agentClass: .local, capabilities: [], secret: secret,
                registeredAtMs: wallNow)
            try registry.add(row)
            signers.append(
                try HeartbeatSigner(
                    credentials: AgentCredentials(
                        id: row.id, secret: Hex.encode(secret), name: row.name, agentClass: .local, capabilities: [],
                        heartbeat: .init(host: "127.0.0.1", port: 0, unixSocket: nil, intervalMs: 250))))
        }
        // Accepted heartbeats need a fresh iteration each; every other kind repeats one datagram.
        distinct = kind == .accepted ? max(1, count) : 1
        var template = signers[0].next(state: .ready, queueDepth: 1, progress: 1, timestampMs: wallNow)
        switch kind {
        case .accepted, .unknownAgent: break
        case .short: template = Array(template.prefix(40))
        case .long: template += [0, 0, 0, 0]
        case .unknownVersion: template[0] = 9
        case .malformed: template[1] = 7
        case .badTag: template[63] ^= 1
        case .replayed:
            let now = wallNow
            _ = template.withUnsafeBytes { registry.ingest($0, now: Clock.monotonicNow(), nowWallMs: now) }
        case .stale: template = signers[0].next(state: .ready, queueDepth: 1, progress: 1, timestampMs: wallNow - 3_600_000)
        }
        if kind == .unknownAgent {
            var stranger = signers[0]
            template = stranger.next(state: .ready, queueDepth: 1, progress: 1, timestampMs: wallNow)
            template.withUnsafeMutableBytes { AgentID(high: 1, low: 2).write(to: $0, offset: 4) }
        }
        datagramLength = template.count
        var buffer = [UInt8]()
        buffer.reserveCapacity(distinct * datagramLength)
        if kind == .accepted {
            for i in 0..<distinct {
                buffer += signers[i % agents].next(state: .ready, queueDepth: i % 7, progress: UInt64(i), timestampMs: wallNow)
            }
        } else {
            buffer = template
        }
        datagrams = buffer
    }

    public struct Result: Sendable, Codable {
        public var kind: String
        public var count: Int
        public var agents: Int
        public var seconds: Double
        public var nanosecondsPerDatagram: Double
        public var datagramsPerSecond: Double
        public var accepted: Int
        public var dropped: Int
    }

    /// Feeds `count` datagrams; returns the timing and what the registry counted.
    public func run(count: Int) -> Result {
        let start = Clock.monotonicNow()
        datagrams.withUnsafeBytes { all in
            for i in 0..<count {
                let offset = (i % distinct) * datagramLength
                let bytes = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + datagramLength)])
                _ = registry.ingest(bytes, now: start, nowWallMs: wallNow)
            }
        }
        let seconds = (Clock.monotonicNow() - start).milliseconds / 1000
        let counters = registry.counters
        let replaySetup = kind == .replayed ? 1 : 0
        return Result(
            kind: kind.rawValue, count: count, agents: agents, seconds: seconds,
            nanosecondsPerDatagram: count == 0 ? 0 : seconds * 1e9 / Double(count),
            datagramsPerSecond: seconds > 0 ? Double(count) / seconds : 0,
            accepted: counters.accepted - replaySetup, dropped: counters.totalDropped)
    }
}
