import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore
import Synchronization

/// The lead's agent table and heartbeat ingestion. One lock guards it; a datagram takes it
/// twice (look up the key, then admit) so that the HMAC is computed outside it.
public final class AgentRegistry: Sendable {
    public struct Settings: Sendable {
        public var staleAfter: Duration
        public var admission: HeartbeatAdmission.Settings
        public var impedance: ImpedanceTracker.Settings
        public var health: AgentHealth.Settings
        public var groupBreaker: GroupBreaker.Settings

        public init(
            staleAfter: Duration = .milliseconds(1000), admission: HeartbeatAdmission.Settings = .init(),
            impedance: ImpedanceTracker.Settings = .init(), health: AgentHealth.Settings = .init(),
            groupBreaker: GroupBreaker.Settings = .init()
        ) {
            self.staleAfter = staleAfter
            self.admission = admission
            self.impedance = impedance
            self.health = health
            self.groupBreaker = groupBreaker
        }
    }

    struct State: Sendable {
        var agents: [AgentID: LiveAgent] = [:]
        var names: [String: AgentID] = [:]
        var counters = HeartbeatCounters()
        /// Seed 001 §6.2 breakers, one per capability.
        var groups: [String: GroupBreaker] = [:]
    }

    public let settings: Settings
    private let admission: HeartbeatAdmission
    /// Each agent's state starts as a copy of these, so that every agent shares one copy of
    /// the settings (`Shared`) instead of carrying its own.
    private let healthPrototype: AgentHealth
    private let trackerPrototypes: [AgentClass: ImpedanceTracker]
    let state = Mutex(State())

    public init(settings: Settings = Settings()) {
        self.settings = settings
        self.admission = HeartbeatAdmission(settings: settings.admission)
        healthPrototype = AgentHealth(settings: settings.health)
        trackerPrototypes = Dictionary(
            uniqueKeysWithValues: AgentClass.allCases.map { ($0, ImpedanceTracker(agentClass: $0, settings: settings.impedance)) })
    }

    public enum RegistrationConflict: Error, Equatable {
        case nameTaken(String)
        case idTaken(AgentID)
    }

    /// Adds an agent; `lastIteration` comes from its checkpoint when the lead restarts.
    public func add(_ row: AgentRow, lastIteration: UInt64? = nil) throws(RegistrationConflict) {
        let live = LiveAgent(
            row: AgentRowSummary(row), tag: HeartbeatTag(secret: row.secret),
            tracker: trackerPrototypes[row.agentClass] ?? ImpedanceTracker(agentClass: row.agentClass, settings: settings.impedance),
            lastIteration: lastIteration, checkpointedIteration: lastIteration, health: healthPrototype)
        try state.withLock { (state: inout State) throws(RegistrationConflict) in
            if state.names[row.name] != nil { throw .nameTaken(row.name) }
            if state.agents[row.id] != nil { throw .idTaken(row.id) }
            state.agents[row.id] = live
            state.names[row.name] = row.id
        }
    }

    /// Forgets an agent (an operator removed it); its heartbeats are unknown from now on.
    @discardableResult
    public func remove(_ id: AgentID) -> Bool {
        state.withLock { state in
            guard let agent = state.agents.removeValue(forKey: id) else { return false }
            state.names[agent.row.name] = nil
            return true
        }
    }

    public func isNameTaken(_ name: String) -> Bool {
        state.withLock { $0.names[name] != nil }
    }

    public var count: Int {
        state.withLock { $0.agents.count }
    }

    public enum Outcome: Equatable, Sendable {
        case accepted(AgentID)
        /// A v2 heartbeat, with the work datagrams it acknowledges.
        case acceptedWithAck(AgentID, WorkAck, slots: Int)
        case dropped(HeartbeatDropReason)
    }

    /// Decodes, checks and admits one datagram, and counts the result. No state is kept for a
    /// dropped datagram. The replay and clock checks run before the HMAC, as IPsec checks its
    /// anti-replay window before the ICV (RFC 4303 §3.4.3): they are cheap and allocate nothing,
    /// so a flood of replays costs no hashing. They run again after it, under the lock, because
    /// another datagram of the same agent may have been admitted meanwhile.
    @discardableResult
    public func ingest(_ bytes: UnsafeRawBufferPointer, now: Instant, nowWallMs: Int64) -> Outcome {
        let datagram: HeartbeatDatagram
        switch HeartbeatDatagram.decode(bytes) {
        case .drop(let reason):
            return drop(reason)
        case .heartbeat(let decoded):
            datagram = decoded
        }
        let precheck = state.withLock { state -> Precheck in
            // By index, reading two fields: copying the agent out would copy all its state.
            guard let index = state.agents.index(forKey: datagram.agentID) else { return .drop(.unknownAgent) }
            if let reason = admission.check(
                iteration: datagram.iteration, lastIteration: state.agents.values[index].lastIteration,
                timestampMs: datagram.timestampMs, nowWallMs: nowWallMs, notBeforeMs: state.agents.values[index].notBeforeWallMs)
            {
                return .drop(reason)
            }
            return .verify(state.agents.values[index].tag)
        }
        let tag: HeartbeatTag
        switch precheck {
        case .drop(let reason): return drop(reason)
        case .verify(let agentTag): tag = agentTag
        }
        guard tag.verifies(datagram, bytes: bytes) else {
            return drop(.badTag)
        }
        let latencyMs = Double(nowWallMs &- datagram.timestampMs)
        return state.withLock { state in
            guard let index = state.agents.index(forKey: datagram.agentID) else {
                state.counters.recordDropped(.unknownAgent)
                return .dropped(.unknownAgent)
            }
            if let reason = admission.check(
                iteration: datagram.iteration, lastIteration: state.agents.values[index].lastIteration,
                timestampMs: datagram.timestampMs, nowWallMs: nowWallMs, notBeforeMs: state.agents.values[index].notBeforeWallMs)
            {
                state.counters.recordDropped(reason)
                return .dropped(reason)
            }
            // In place: copying the agent out and back would copy its latency ring.
            state.agents.values[index].accept(datagram, at: now, latencyMs: latencyMs)
            state.counters.recordAccepted()
            if let ack = datagram.workAck { return .acceptedWithAck(datagram.agentID, ack, slots: Int(datagram.workSlots)) }
            return .accepted(datagram.agentID)
        }
    }

    /// The iteration a starting process of the agent is handed, its heartbeats to start above:
    /// the last accepted one, lowered (here too) to at most the clock's allowance ahead of now.
    /// Replays above the lowered floor carry old timestamps and are dropped as stale; without it,
    /// one signed heartbeat with iteration 2^64-1 was stored, handed back at every start and
    /// kept the agent's heartbeats out for good, across heals and lead restarts.
    func startingIteration(of id: AgentID, nowWallMs: Int64) -> UInt64? {
        let ceiling = admission.iterationCeiling(nowWallMs: nowWallMs)
        return state.withLock { state in
            guard let index = state.agents.index(forKey: id), let last = state.agents.values[index].lastIteration else { return nil }
            guard last > ceiling else { return last }
            state.agents.values[index].lowerIterationFloor(to: ceiling, at: nowWallMs)
            return ceiling
        }
    }

    /// The agent's key, for signing what the lead sends it.
    func tag(of id: AgentID) -> HeartbeatTag? {
        state.withLock { $0.agents[id]?.tag }
    }

    private enum Precheck {
        case verify(HeartbeatTag)
        case drop(HeartbeatDropReason)
    }

    private func drop(_ reason: HeartbeatDropReason) -> Outcome {
        state.withLock { $0.counters.recordDropped(reason) }
        return .dropped(reason)
    }

    public var counters: HeartbeatCounters {
        state.withLock { $0.counters }
    }

    public func views(at now: Instant, outstanding: [AgentID: Int] = [:]) -> [AgentView] {
        let agents = state.withLock { Array($0.agents.values) }
        return agents.sorted { ($0.row.name, $0.row.id) < ($1.row.name, $1.row.id) }.map {
            view(of: $0, at: now, outstanding: outstanding[$0.row.id] ?? 0)
        }
    }

    public func view(of id: AgentID, at now: Instant, outstanding: Int = 0) -> AgentView? {
        state.withLock { $0.agents[id] }.map { view(of: $0, at: now, outstanding: outstanding) }
    }

    private func view(of agent: LiveAgent, at now: Instant, outstanding: Int) -> AgentView {
        var view = AgentView(
            id: agent.row.id, name: agent.row.name, agentClass: agent.row.agentClass,
            capabilities: agent.row.capabilities,
            state: agent.state(at: now, staleAfter: settings.staleAfter).description,
            reportedState: agent.lastHeartbeat == nil ? nil : agent.reportedState.description,
            iteration: agent.lastIteration,
            lastHeartbeatMsAgo: agent.lastHeartbeat.map { Int64((now - $0).milliseconds.rounded()) },
            progress: agent.progress,
            impedance: ImpedanceView(agent.tracker.impedance(at: now)))
        view.quarantined = agent.quarantined
        view.outstandingTasks = outstanding
        let health = agent.health
        view.health = AgentHealthView(
            condition: health.condition.rawValue, reason: health.reason,
            sinceMsAgo: health.since.map { Int64((now - $0).milliseconds.rounded()) },
            phi: ImpedanceView.round(min(health.phi.phi(at: now), 99)), breaker: health.breaker.state.rawValue,
            canaryLimit: health.canary?.limit)
        return view
    }

    /// An agent as routing and scatter-gather need it.
    public struct Candidate: Sendable {
        public var id: AgentID
        public var name: String
        public var route: RouteCandidate
    }

    /// Whom an ask or broadcast goes to: every agent with `capability` (all when nil) but those
    /// quarantined or out on purpose.
    public func gatherTargets(capability: String?, at now: Instant, outstanding: [AgentID: Int]) -> [Candidate] {
        candidates(capability: capability, at: now, outstanding: outstanding, outOnPurpose: false).filter { $0.route.availability != .quarantined }
    }

    /// Agents with `capability` (all agents when nil), with what predicts their arrival now.
    /// `outstanding` is the work the lead handed each agent and has not seen finished: it
    /// counts as queue even before the agent's next heartbeat reports it. `outOnPurpose` false
    /// leaves out agents stopped, frozen or gone on purpose (`AgentCondition.isOutOnPurpose`).
    public func candidates(capability: String?, at now: Instant, outstanding: [AgentID: Int], outOnPurpose: Bool = true) -> [Candidate] {
        state.withLock { state in
            var result: [Candidate] = []
            state.agents.forEachInPlace { id, agent in
                if let capability, !agent.row.capabilities.contains(capability) { return }
                if !outOnPurpose && agent.health.condition.isOutOnPurpose { return }
                let waiting = outstanding[id] ?? 0
                let availability = RouteCandidate.Availability(
                    quarantined: agent.quarantined, condition: agent.health.condition,
                    state: agent.state(at: now, staleAfter: settings.staleAfter), outstanding: waiting, taskLimit: agent.health.taskLimit(at: now))
                result.append(
                    Candidate(
                        id: id, name: agent.row.name,
                        route: agent.tracker.routeCandidate(
                            at: now, availability: availability, queueDepth: max(agent.tracker.queueDepth, waiting))))
            }
            // A stable order, so that ties go to the same agent each time.
            return result.sorted { ($0.name, $0.id) < ($1.name, $1.id) }
        }
    }

    /// Feeds the impedance tracker and the agent's breaker; returns the breaker's change, if any.
    @discardableResult
    public func recordCompletion(
        of id: AgentID, at now: Instant, totalMs: Double, predictedMs: Double, estimatedProcessingMs: Double, succeeded: Bool
    ) -> CircuitBreaker.Transition? {
        state.withLock { state in
            guard let index = state.agents.index(forKey: id) else { return nil }
            state.agents.values[index].tracker.recordCompletion(
                at: now, totalMs: totalMs, predictedMs: predictedMs, estimatedProcessingMs: estimatedProcessingMs,
                succeeded: succeeded)
            return state.agents.values[index].health.completed(success: succeeded, at: now)
        }
    }

    /// A result with no timing to learn from: its health (breaker, loop watchdog) still sees it.
    @discardableResult
    public func recordOutcome(of id: AgentID, at now: Instant, succeeded: Bool) -> CircuitBreaker.Transition? {
        state.withLock { state in
            guard let index = state.agents.index(forKey: id) else { return nil }
            return state.agents.values[index].health.completed(success: succeeded, at: now)
        }
    }

    /// A result the agent posted that the lead could not store (a full disk): it answered.
    public func recordUnstoredResult(of id: AgentID, at now: Instant) {
        state.withLock { state in
            guard let index = state.agents.index(forKey: id) else { return }
            state.agents.values[index].health.answered(at: now)
        }
    }

    /// Seed 000 ModelLivenessProbe's verdict on the agent's own HTTP endpoint.
    public func recordLivenessProbe(of id: AgentID, _ verdict: LivenessProbe.Verdict, at now: Instant) {
        state.withLock { state in
            guard let index = state.agents.index(forKey: id) else { return }
            state.agents.values[index].health.livenessProbe(verdict, at: now)
        }
    }

    /// A task handed out and never finished (its lease ran out) counts against the breaker.
    @discardableResult
    public func recordLostTask(of id: AgentID, at now: Instant) -> CircuitBreaker.Transition? {
        recordOutcome(of: id, at: now, succeeded: false)
    }

    /// The router handed `id` a task: in a half-open breaker that is its trial.
    public func recordDispatch(to id: AgentID, at now: Instant) {
        state.withLock { state in
            guard let index = state.agents.index(forKey: id) else { return }
            state.agents.values[index].health.dispatched(at: now)
        }
    }

    /// Returns false when there is no such agent.
    @discardableResult
    public func setQuarantined(_ id: AgentID, _ quarantined: Bool) -> Bool {
        state.withLock { state in
            guard state.agents[id] != nil else { return false }
            state.agents[id]?.quarantined = quarantined
            return true
        }
    }

    public func quarantinedNames() -> [String] {
        state.withLock { state in
            var names: [String] = []
            state.agents.forEachInPlace { _, agent in if agent.quarantined { names.append(agent.row.name) } }
            return names
        }.sorted()
    }

    /// Looks an agent up by id text or by name, as operators type either.
    public func resolve(_ text: String) -> (id: AgentID, name: String)? {
        switch lookUp(text) {
        case .found(let id, let name), .nameAlsoIDPrefix(let id, let name, _): (id, name)
        case .ambiguous, .none: nil
        }
    }

    public enum Lookup: Equatable {
        case found(AgentID, String)
        /// A prefix of several ids: their agents' names.
        case ambiguous([String])
        /// An agent's name that is also the start of other agents' ids (their names): an
        /// operator who copied an id's first characters must not act on the agent that chose
        /// that name (helper probe).
        case nameAlsoIDPrefix(AgentID, String, others: [String])
        case none
    }

    /// By name, whole id, or unique id prefix of 4 or more characters (IDPrefix).
    public func lookUp(_ text: String) -> Lookup {
        state.withLock { Self.lookUp(text, in: $0) }
    }

    /// Operators and playbook steps look agents up, not heartbeats or tasks: the scan of every id
    /// that a name like `cafe` needs is cheap there.
    @_optimize(size)  // cold: operators' commands and playbook steps (the 25 MB budget)
    private static func lookUp(_ text: String, in state: State) -> Lookup {
        if let id = AgentID(text), let agent = state.agents[id] { return .found(id, agent.row.name) }
        let prefixed = IDPrefix.resolve(text, among: state.agents.keys.lazy.map(\.description))
        if let id = state.names[text] {
            let own = id.description
            switch prefixed {
            case .unique(let other) where other != own: return .nameAlsoIDPrefix(id, text, others: [name(of: other, in: state)])
            case .ambiguous(let ids): return .nameAlsoIDPrefix(id, text, others: ids.compactMap { $0 == own ? nil : name(of: $0, in: state) })
            default: return .found(id, text)
            }
        }
        switch prefixed {
        case .unique(let found):
            guard let id = AgentID(found), let agent = state.agents[id] else { return .none }
            return .found(id, agent.row.name)
        case .ambiguous(let ids):
            return .ambiguous(ids.map { name(of: $0, in: state) })
        case .none:
            return .none
        }
    }

    private static func name(of idText: String, in state: State) -> String {
        AgentID(idText).flatMap { state.agents[$0]?.row.name } ?? idText
    }

    /// Whether `mac` is agent `id`'s API credential (AgentAPICredential), compared in constant time.
    public func verifiesCredential(of id: AgentID, mac: [UInt8]) -> Bool {
        guard let tag = state.withLock({ $0.agents[id]?.tag }) else { return false }
        return SecretToken.constantTimeEqual(AgentAPICredential.mac(agentID: id, tag: tag), mac)
    }

    public func name(of id: AgentID) -> String? {
        state.withLock { $0.agents[id]?.row.name }
    }

    /// Every agent's capabilities, by name: root-cause evidence and the go/no-go's group count.
    public func capabilitiesByName() -> [String: [String]] {
        state.withLock { state in
            Dictionary(state.agents.values.map { ($0.row.name, $0.row.capabilities) }, uniquingKeysWith: { (first: [String], _: [String]) in first })
        }
    }

    /// Agents whose heartbeats say CONFLICT.
    public func conflictingNames(at now: Instant) -> [String] {
        state.withLock { state in
            var names: [String] = []
            state.agents.forEachInPlace { _, agent in
                if agent.state(at: now, staleAfter: settings.staleAfter) == .conflict { names.append(agent.row.name) }
            }
            return names
        }.sorted()
    }

    public func summary(at now: Instant) -> ClusterSummary {
        let members = state.withLock { state in
            var members: [ClusterSummary.Member] = []
            members.reserveCapacity(state.agents.count)
            state.agents.forEachInPlace { _, agent in
                members.append(
                    ClusterSummary.Member(state: agent.state(at: now, staleAfter: settings.staleAfter), impedance: agent.tracker.impedance(at: now)))
            }
            return members
        }
        return ClusterSummary(members: members)
    }

    /// Checkpoints for the agents that heartbeat since the last call, marked as taken.
    public func dueCheckpoints(at now: Instant, nowWallMs: Int64) -> [AgentCheckpoint] {
        state.withLock { state in
            var due: [AgentCheckpoint] = []
            state.agents.updateEach { id, agent in
                guard let iteration = agent.lastIteration, iteration != agent.checkpointedIteration else { return }
                let impedance = agent.tracker.impedance(at: now)
                due.append(
                    AgentCheckpoint(
                        agentID: id, atMs: nowWallMs, lastIteration: iteration,
                        state: agent.state(at: now, staleAfter: settings.staleAfter), latencyMs: impedance.latencyMs,
                        queueDepth: impedance.queueDepth, score: impedance.score, reliability: impedance.reliability,
                        drift: impedance.drift))
                agent.checkpointedIteration = iteration
            }
            return due
        }
    }
}
