import PimeshAgent
import PimeshCore
import PimeshStore
import Testing

@testable import PimeshRuntime

@Suite struct AgentRegistryTests {
    let wallNow: Int64 = 1_800_000_000_000
    let now = Instant.seconds(5000)

    func makeAgent(_ name: String) -> (AgentRow, HeartbeatSigner) {
        let secret = (0..<32).map { _ in UInt8.random(in: 0...255) }
        let row = AgentRow(id: .random(), name: name, agentClass: .local, capabilities: [], secret: secret, registeredAtMs: 0)
        let credentials = AgentCredentials(
            id: row.id, secret: Hex.encode(secret), name: name, agentClass: .local, capabilities: [],
            heartbeat: .init(host: "127.0.0.1", port: 1, unixSocket: nil, intervalMs: 250))
        return (row, try! HeartbeatSigner(credentials: credentials))
    }

    func ingest(_ registry: AgentRegistry, _ bytes: [UInt8], at instant: Instant? = nil) -> AgentRegistry.Outcome {
        bytes.withUnsafeBytes { registry.ingest($0, now: instant ?? now, nowWallMs: wallNow) }
    }

    @Test func aNameThatStartsAnotherAgentsIDNamesNeitherForAnOperator() throws {
        let registry = AgentRegistry()
        let (real, _) = makeAgent("real")
        try registry.add(real)
        let start = String(real.id.description.prefix(8))
        let (squatter, _) = makeAgent(start)
        try registry.add(squatter)
        #expect(registry.lookUp(start) == .nameAlsoIDPrefix(squatter.id, start, others: ["real"]))
        #expect(registry.lookUp(start.uppercased()) == .found(real.id, "real"))
        #expect(registry.lookUp(real.id.description) == .found(real.id, "real"))
        #expect(registry.lookUp(squatter.id.description) == .found(squatter.id, start))
        #expect(registry.lookUp("real") == .found(real.id, "real"))
        // Code that names agents (a playbook's steps) means the name.
        #expect(registry.resolve(start)?.id == squatter.id)
    }

    @Test func acceptedHeartbeatUpdatesTheAgent() throws {
        let registry = AgentRegistry()
        var (row, signer) = makeAgent("a")
        try registry.add(row)
        #expect(registry.views(at: now)[0].state == "TRANSIT")
        let outcome = ingest(registry, signer.next(state: .ready, queueDepth: 4, progress: 7, timestampMs: wallNow - 12))
        #expect(outcome == .accepted(row.id))
        let view = registry.views(at: now)[0]
        #expect(view.state == "READY")
        #expect(view.iteration == signer.iteration)
        #expect(view.progress == 7)
        #expect(view.impedance.queueDepth == 4)
        #expect(view.impedance.latencyMs == 12)
        // No heartbeat within stale_after (1 s): outcome unknown again.
        #expect(registry.views(at: now + .milliseconds(1001))[0].state == "TRANSIT")
    }

    @Test func tenThousandBadDatagramsAreAllCountedAndChangeNothing() throws {
        let registry = AgentRegistry()
        var agents = (0..<5).map { makeAgent("agent-\($0)") }
        var accepted: [[UInt8]] = []
        for i in agents.indices {
            try registry.add(agents[i].0)
            let bytes = agents[i].1.next(state: .ready, queueDepth: i, progress: UInt64(i), timestampMs: wallNow - 3)
            #expect(ingest(registry, bytes) == .accepted(agents[i].0.id))
            accepted.append(bytes)
        }
        let before = registry.views(at: now)
        var (_, stranger) = makeAgent("stranger")
        var rng = SplitMix64(seed: 7)
        var expected: [HeartbeatDropReason: Int] = [:]
        for n in 0..<10_000 {
            var bytes: [UInt8]
            let reason: HeartbeatDropReason
            let victim = n % agents.count
            switch n % 8 {
            case 0:  // random garbage of random length
                let length = Int.random(in: 0...200, using: &rng)
                bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if length >= 64 { bytes[0] = 9 }  // keep it from being a v1 or v2 datagram by chance
                // Past the longest known version (80 bytes, v2) it is too long whatever its version says.
                reason = length < 64 ? .short : length > 80 ? .long : .unknownVersion
            case 1:  // a real datagram cut short
                bytes = Array(accepted[victim].prefix(Int.random(in: 0...63, using: &rng)))
                reason = .short
            case 2:  // forged: a field changed after signing
                bytes = accepted[victim]
                bytes[36 + Int.random(in: 0...3, using: &rng)] ^= 0x40
                bytes[20] = 0x7F  // iteration far above the last, so only the tag stops it
                reason = .badTag
            case 3:  // replayed: a datagram the lead already accepted
                bytes = accepted[victim]
                reason = .replayed
            case 4:  // signed by someone else's secret for a real agent id
                bytes = stranger.next(state: .ready, queueDepth: 0, progress: 0, timestampMs: wallNow)
                let id = agents[victim].0.id
                bytes.withUnsafeMutableBytes { id.write(to: $0, offset: 4) }
                bytes[20] = 0x7F  // above the victim's last iteration, so only the tag stops it
                reason = .badTag
            case 5:  // a well-signed heartbeat of an agent this lead never registered
                bytes = stranger.next(state: .ready, queueDepth: 0, progress: 0, timestampMs: wallNow)
                reason = .unknownAgent
            case 6:  // an older heartbeat, signed properly: iteration below the last
                let signerCopy = agents[victim].1
                var old = signerCopy
                bytes = old.next(state: .conflict, queueDepth: 99, progress: 99, timestampMs: wallNow)
                bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(1).bigEndian, toByteOffset: 20, as: UInt64.self) }
                reason = .replayed  // judged before the tag, like an IPsec replay window
            default:  // bad version or malformed state byte on a real datagram
                bytes = accepted[victim]
                if n % 16 == 7 {
                    bytes[0] = 3
                    reason = .unknownVersion
                } else {
                    bytes[1] = 5
                    reason = .malformed
                }
            }
            expected[reason, default: 0] += 1
            #expect(ingest(registry, bytes) == .dropped(reason))
        }
        let counters = registry.counters
        #expect(counters.accepted == 5)
        #expect(counters.totalDropped == 10_000)
        for reason in HeartbeatDropReason.allCases {
            #expect(counters.dropped(reason) == expected[reason, default: 0], "\(reason)")
        }
        #expect(registry.views(at: now) == before)
    }

    @Test func staleAndReplayedSignedHeartbeatsAreRefused() throws {
        let registry = AgentRegistry()
        var (row, signer) = makeAgent("a")
        try registry.add(row)
        let first = signer.next(state: .ready, queueDepth: 0, progress: 0, timestampMs: wallNow)
        #expect(ingest(registry, first) == .accepted(row.id))
        #expect(ingest(registry, first) == .dropped(.replayed))
        let old = signer.next(state: .ready, queueDepth: 0, progress: 0, timestampMs: wallNow - 31_000)
        #expect(ingest(registry, old) == .dropped(.stale))
    }

    @Test func restartedLeadRefusesIterationsFromBeforeItsCheckpoint() throws {
        let registry = AgentRegistry()
        var (row, signer) = makeAgent("a")
        let early = signer.next(state: .ready, queueDepth: 0, progress: 0, timestampMs: wallNow)
        try registry.add(row, lastIteration: signer.iteration + 10)
        #expect(ingest(registry, early) == .dropped(.replayed))
    }

    @Test func checkpointsOnlyForAgentsThatMoved() throws {
        let registry = AgentRegistry()
        var (a, signerA) = makeAgent("a")
        let (b, _) = makeAgent("b")
        try registry.add(a)
        try registry.add(b)
        _ = ingest(registry, signerA.next(state: .ready, queueDepth: 2, progress: 1, timestampMs: wallNow))
        let due = registry.dueCheckpoints(at: now, nowWallMs: wallNow)
        #expect(due.map(\.agentID) == [a.id])
        #expect(due.first?.lastIteration == signerA.iteration)
        #expect(registry.dueCheckpoints(at: now, nowWallMs: wallNow).isEmpty)
    }

    @Test func namesAreUnique() throws {
        let registry = AgentRegistry()
        try registry.add(makeAgent("a").0)
        #expect(throws: AgentRegistry.RegistrationConflict.nameTaken("a")) { try registry.add(makeAgent("a").0) }
    }
}
