import FoundationEssentials
import Glibc
import Logging
import PimeshAgent
import PimeshCore
import PimeshSystem
import ServiceLifecycle

/// N simulated agents in one process (`pimesh swarm`). Each has its own identity and secret and
/// speaks the real protocol: registration over the API, signed heartbeats over UDP (v2 when it
/// takes work as datagrams, which arrive on the same socket).
/// Clearly a simulation: it stands in for agents, never for the lead.
public final class SimulatedSwarm: Service, Sendable {
    public struct Settings: Sendable {
        public var dataDir: String
        public var agents: Int
        public var namePrefix: String
        /// Saved identities (0600) so a restarted swarm reuses its agents instead of registering new ones.
        public var stateFile: String
        public var seed: UInt64
        public var duration: Duration?
        /// Pull tasks and answer asks (off: heartbeats only, for heartbeat load benchmarks).
        public var work = true
        /// Share of tasks that fail, and of answers that are CONFLICT (DATA_CONTRADICTION).
        public var failRate = 0.0
        public var conflictRate = 0.0
        /// Work as datagrams to the heartbeat socket, or a long poll per agent (what agents that
        /// cannot receive datagrams do; it costs the lead a connection per agent).
        public var transport = PimeshAgent.Transport.datagrams
        /// Share of arriving work datagrams thrown away unread, to show that loss delays work
        /// but never loses or repeats it.
        public var dropWorkDatagrams = 0.0
        /// Every agent offers exactly these, instead of a mix from `SwarmAgentProfile.capabilityPool`.
        public var capabilities: [String]?
        /// The swarm stops (its agents leave) once this process is no longer its parent: a bench
        /// killed with SIGKILL would otherwise leave it heartbeating for good.
        public var parentPID: Int32?

        public init(dataDir: String, agents: Int, namePrefix: String, stateFile: String, seed: UInt64, duration: Duration?) {
            self.dataDir = dataDir
            self.agents = agents
            self.namePrefix = namePrefix
            self.stateFile = stateFile
            self.seed = seed
            self.duration = duration
        }
    }

    public struct SwarmError: Error, CustomStringConvertible {
        public var description: String
    }

    public let settings: Settings
    private let logger: Logger

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    public func run() async throws {
        if let parent = settings.parentPID, getppid() != parent {
            throw SwarmError(description: "--parent-pid \(parent) is not this swarm's parent (\(getppid())): it is gone, or the pid is wrong")
        }
        let client = try await waitForLead()
        var rng = SplitMix64(seed: settings.seed)
        let profiles = (0..<settings.agents).map { index in
            var profile = SwarmAgentProfile.make(index: index, using: &rng)
            if let capabilities = settings.capabilities { profile.capabilities = capabilities }
            return profile
        }
        let members = try await identities(client: client, profiles: profiles)
        let noise = rng
        let held = HeldWork(count: members.count)
        let datagrams = settings.work && settings.transport == .datagrams
        let (inbound, delivered) = AsyncStream<Inbound>.makeStream()
        try? await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await self.heartbeat(members, profiles: profiles, rng: noise, held: held, delivered: datagrams ? delivered : nil)
                }
                if self.settings.work {
                    group.addTask {
                        if datagrams {
                            try await self.work(members, profiles: profiles, held: held, inbound: inbound)
                        } else {
                            try await self.work(members, profiles: profiles, held: held)
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
        await leave(members.map(\.1))
    }

    /// Stopped on purpose (SIGINT, SIGTERM, --duration): every agent says goodbye, so the lead
    /// counts them as left rather than failed (issue 13). Four at a time, each bounded, so that
    /// a lead that is gone does not hold the swarm's exit for long.
    private func leave(_ agents: [AgentCredentials]) async {
        let dataDir = settings.dataDir
        let left = await withTaskGroup(of: Int.self) { group in
            for lane in 0..<4 {
                group.addTask {
                    var told = 0
                    for index in stride(from: lane, to: agents.count, by: 4) {
                        guard let client = try? LeadClient.forAgent(agents[index], dataDir: dataDir).withTimeout(milliseconds: 2000),
                            (try? client.leave(agentID: agents[index].id)) != nil
                        else { continue }
                        told += 1
                    }
                    return told
                }
            }
            return await group.reduce(0, +)
        }
        logger.info("swarm agents left", metadata: ["agents": "\(agents.count)", "told_the_lead": "\(left)"])
    }

    /// The lead may still be starting when the swarm does: wait up to 10 s for it.
    private func waitForLead() async throws -> LeadClient {
        let deadline = Clock.monotonicNow() + .seconds(10)
        while true {
            do {
                let client = try LeadClient(dataDir: settings.dataDir)
                _ = try client.get("/v1/status")
                return client
            } catch {
                if Clock.monotonicNow() > deadline {
                    throw SwarmError(description: "no lead answered for data dir \(settings.dataDir) within 10 s: \(error)")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    func name(_ index: Int) -> String {
        Self.agentName(prefix: settings.namePrefix, index: index, of: settings.agents)
    }

    /// The name of agent `index` (from 0) of a swarm of `count`: `<prefix>-001`, zero-padded to
    /// the width of the count.
    static func agentName(prefix: String, index: Int, of count: Int) -> String {
        let digits = String(index + 1)
        let width = max(3, String(count).count)
        return prefix + "-" + String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// Saved identities the lead still knows, plus new registrations for the rest, by index.
    private func identities(client: LeadClient, profiles: [SwarmAgentProfile]) async throws -> [(Int, AgentCredentials)] {
        var stored: [AgentCredentials] = []
        if FileIO.exists(settings.stateFile) {
            stored = try APICoding.decode([AgentCredentials].self, from: try FileIO.read(path: settings.stateFile))
        }
        // The lead's last accepted iterations too: a swarm restarted after the wall clock
        // stepped back would be dropped as replays until the clock caught up (docs/protocol.md).
        let known = Dictionary(try client.agents().agents.map { ($0.id, $0.iteration) }, uniquingKeysWith: { first, _ in first })
        var saved: [String: AgentCredentials] = [:]
        for var credentials in stored {
            guard let lastIteration = known[credentials.id] else { continue }
            credentials.lastAcceptedIteration = lastIteration
            saved[credentials.name] = credentials
        }
        var result: [(Int, AgentCredentials)] = []
        var registered = 0
        try await withThrowingTaskGroup(of: (Int, AgentCredentials).self) { group in
            for index in 0..<settings.agents {
                if let existing = saved[name(index)] {
                    result.append((index, existing))
                    continue
                }
                let registration = LeadClient.Registration(
                    name: name(index), agentClass: profiles[index].agentClass, capabilities: profiles[index].capabilities)
                group.addTask {
                    do {
                        return (index, try client.register(registration))
                    } catch let error as LeadClient.APIError where error.status == 409 {
                        throw SwarmError(
                            description: "\(registration.name) is registered already but not in \(self.settings.stateFile); "
                                + "use another --name-prefix or restore the state file")
                    }
                }
            }
            for try await member in group {
                result.append(member)
                registered += 1
            }
        }
        if registered > 0 {
            // Keep identities of other swarm sizes too: a later, larger swarm reuses them.
            var all = Dictionary(stored.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
            for (_, credentials) in result { all[credentials.name] = credentials }
            try FileIO.writeAtomically(
                path: settings.stateFile, bytes: try APICoding.encode(all.values.sorted { $0.name < $1.name }, pretty: true),
                mode: 0o600)
        }
        logger.info("swarm agents ready", metadata: ["agents": "\(result.count)", "registered_now": "\(registered)"])
        return result.sorted { $0.0 < $1.0 }
    }

    struct Member {
        var signer: HeartbeatSigner
        var profile: SwarmAgentProfile
        var queueDepth: Int
        var progress: UInt64
        var nextDue: Instant
        var receiver: WorkReceiver
    }

    /// A work datagram taken by agent `offset`.
    struct Inbound: Sendable {
        var offset: Int
        var received: WorkReceiver.Received
    }

    private func heartbeat(
        _ identities: [(Int, AgentCredentials)], profiles: [SwarmAgentProfile], rng: SplitMix64, held: HeldWork,
        delivered: AsyncStream<Inbound>.Continuation?
    ) async throws {
        defer { delivered?.finish() }
        var rng = rng
        let interval = Duration.milliseconds(identities.first?.1.heartbeat.intervalMs ?? 250)
        let start = Clock.monotonicNow()
        var members: [Member] = []
        for (offset, (index, credentials)) in identities.enumerated() {
            let profile = profiles[index]
            // Spread sends over the interval so the lead sees a steady stream, not bursts.
            let phase = interval * Double(offset) / Double(max(1, identities.count))
            let signer = try HeartbeatSigner(credentials: credentials)
            members.append(
                Member(
                    signer: signer, profile: profile, queueDepth: Int(profile.meanQueueDepth.rounded()), progress: 0, nextDue: start + phase,
                    receiver: signer.workReceiver()))
        }
        let byID = Dictionary(uniqueKeysWithValues: members.indices.map { (members[$0].signer.agentID, $0) })
        var endpoint = try LeadDiscovery.endpoint(dataDir: settings.dataDir).heartbeat
        var sender = try DatagramSender(destination: .loopback(host: endpoint.host, port: endpoint.port))
        var lastDiscovery = start
        let stopAt = settings.duration.map { start + $0 }
        while !Task.isCancelled {
            let now = Clock.monotonicNow()
            if let stopAt, now >= stopAt { return }
            // A restarted lead may come back on another port: look again every 2 s.
            if now - lastDiscovery > .seconds(2) {
                lastDiscovery = now
                if let parent = settings.parentPID, getppid() != parent {
                    logger.notice("the swarm's parent is gone: stopping", metadata: ["parent_pid": "\(parent)"])
                    return
                }
                if let fresh = try? LeadDiscovery.endpoint(dataDir: settings.dataDir).heartbeat, fresh != endpoint {
                    endpoint = fresh
                    sender = try DatagramSender(destination: .loopback(host: endpoint.host, port: endpoint.port))
                }
            }
            let wallMs = Clock.wallMilliseconds()
            for i in members.indices where members[i].nextDue <= now {
                let latency = members[i].profile.latencySample(using: &rng)
                // Working agents report the work they hold; idle simulations wander around a mean.
                members[i].queueDepth =
                    settings.work ? held.count(i) : members[i].profile.nextQueueDepth(after: members[i].queueDepth, using: &rng)
                // Progress counts work done: it moves only while the agent holds some, or the
                // lead could never see a LOOP end (a counter that stands still, work taken back).
                if !settings.work || held.count(i) > 0 { members[i].progress += UInt64.random(in: 1...5, using: &rng) }
                let bytes = members[i].signer.next(
                    state: .ready, queueDepth: members[i].queueDepth, progress: members[i].progress,
                    timestampMs: wallMs - Int64(latency.rounded()), workAck: delivered == nil ? nil : members[i].receiver.window.ack)
                // (v2 work slots 0: a simulated agent works on everything it is sent at once.)
                // The lead may be restarting: a lost heartbeat is what the protocol expects.
                try? sender.send(bytes)
                members[i].nextDue = members[i].nextDue + interval
                if members[i].nextDue < now { members[i].nextDue = now + interval }
            }
            // Work that arrived since the last pass: each new datagram is acknowledged at once.
            if let delivered {
                while let bytes = sender.receive(timeoutMs: 0) {
                    guard bytes.count >= 20, Double.random(in: 0..<1, using: &rng) >= settings.dropWorkDatagrams else { continue }
                    let id = bytes.withUnsafeBytes { AgentID(bytes: $0, offset: 4) }
                    guard let i = byID[id], let received = bytes.withUnsafeBytes({ members[i].receiver.accept($0) }) else { continue }
                    let ack = members[i].signer.next(
                        state: .ready, queueDepth: held.count(i), progress: members[i].progress, workAck: members[i].receiver.window.ack)
                    try? sender.send(ack)
                    delivered.yield(Inbound(offset: i, received: received))
                }
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
