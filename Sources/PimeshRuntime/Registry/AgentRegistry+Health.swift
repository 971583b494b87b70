import PimeshAgent
import PimeshCore
import PimeshStore

extension AgentRegistry {
    /// One agent's change of condition, found by the health tick.
    public struct HealthChange: Sendable {
        public var id: AgentID
        public var name: String
        public var capabilities: [String]
        public var change: AgentHealth.Change
    }

    /// Agents by condition, and how many are healthy (alive and READY) out of how many count:
    /// the degradation input (`AgentHealth.countsForHealth`: frozen, stopped, left, departed and
    /// pending agents do not count). `pending` is counted apart from `unknown`.
    public struct HealthCounts: Sendable {
        public var byCondition: [AgentCondition: Int] = [:]
        public var pending = 0
        public var healthy = 0
        public var total = 0

        mutating func add(_ judged: AgentHealth.Judgement) {
            if judged.pending {
                pending += 1
                return
            }
            byCondition[judged.condition, default: 0] += 1
            if judged.counted { total += 1 }
            if judged.healthy { healthy += 1 }
        }
    }

    /// The health tick: judges every agent with what the shell knows (work out with it, its
    /// process, whether a manifest expects it) and returns the changes since the last tick,
    /// and the counts after them. Counted in the same pass: a second walk over 1,000 agents
    /// every 100 ms was a fifth of the tick (perf, issue 14).
    public func evaluateHealth(
        at now: Instant, outstanding: [AgentID: Int], liveness: [AgentID: AgentHealth.ProcessLiveness], expected: Set<AgentID> = []
    ) -> (changes: [HealthChange], counts: HealthCounts) {
        state.withLock { state in
            var changes: [HealthChange] = []
            var counts = HealthCounts()
            state.agents.updateEach { id, agent in
                let busy = (outstanding[id] ?? 0) > 0
                let isExpected = expected.contains(id)
                agent.tracker.sampleScore(at: now)
                if let missed = agent.health.takeUnreportedFailure() {
                    changes.append(HealthChange(id: id, name: agent.row.name, capabilities: agent.row.capabilities, change: missed))
                }
                if let change = agent.health.evaluate(at: now, busy: busy, process: liveness[id] ?? .unknown, expected: isExpected) {
                    changes.append(HealthChange(id: id, name: agent.row.name, capabilities: agent.row.capabilities, change: change))
                }
                counts.add(agent.judgement(at: now, expected: isExpected, staleAfter: settings.staleAfter))
            }
            return (changes, counts)
        }
    }

    /// Canary stages; returns the agents whose stage moved, with the new limit.
    public func evaluateCanaries(
        at now: Instant, utilisation: Double, queueLatencyMs: [AgentID: Double], mayAdvance: Bool
    ) -> [(name: String, limit: Int?)] {
        state.withLock { state in
            var moved: [(name: String, limit: Int?)] = []
            state.agents.updateEach { id, agent in
                guard agent.health.canary != nil else { return }
                if agent.health.evaluateCanary(
                    at: now, utilisation: utilisation, queueLatencyMs: queueLatencyMs[id] ?? 0, mayAdvance: mayAdvance) != nil
                {
                    moved.append((agent.row.name, agent.health.canary?.limit))
                }
            }
            return moved
        }
    }

    public func exited(_ id: AgentID, at now: Instant, reason: String, requested: Bool = false, clean: Bool = false) {
        state.withLock { $0.agents[id]?.health.exited(at: now, reason: reason, requested: requested, clean: clean) }
    }

    public func stopped(_ id: AgentID, at now: Instant, reason: String) {
        state.withLock { $0.agents[id]?.health.stop(at: now, reason: reason) }
    }

    public func started(_ id: AgentID, at now: Instant, restart: Bool) {
        state.withLock { $0.agents[id]?.health.started(at: now, restart: restart) }
    }

    /// The agent said goodbye; false when there is no such agent.
    public func leave(_ id: AgentID, at now: Instant) -> Bool {
        state.withLock { state in
            guard state.agents[id] != nil else { return false }
            state.agents[id]?.health.leave(at: now)
            return true
        }
    }

    /// Whether an agent with `capability` is pending (not heard yet since the lead started):
    /// a task for it waits in the queue instead of being skipped.
    public func hasPendingAgent(capability: String, at now: Instant) -> Bool {
        state.withLock { state in
            var pending = false
            state.agents.forEachInPlace { _, agent in
                if !pending, agent.row.capabilities.contains(capability), agent.health.isPending(at: now, expected: true) { pending = true }
            }
            return pending
        }
    }

    public func setFrozen(_ id: AgentID, _ frozen: Bool, at now: Instant) {
        state.withLock { state in
            if frozen { state.agents[id]?.health.freeze(at: now) } else { state.agents[id]?.health.thaw(at: now) }
        }
    }

    /// Whether the agent's breaker is half open: it holds at most its one trial task.
    public func isOnBreakerTrial(_ id: AgentID) -> Bool {
        state.withLock { $0.agents[id]?.health.breaker.state == .halfOpen }
    }

    public func condition(of id: AgentID) -> AgentCondition? {
        state.withLock { $0.agents[id]?.health.condition }
    }

    /// The counts of `evaluateHealth` without judging anyone.
    public func healthCounts(at now: Instant, expected: Set<AgentID> = []) -> HealthCounts {
        state.withLock { state in
            var counts = HealthCounts()
            state.agents.updateEach { id, agent in
                counts.add(agent.judgement(at: now, expected: expected.contains(id), staleAfter: settings.staleAfter))
            }
            return counts
        }
    }

    /// Every agent the healthy ratio counts, as the incident triggers read them.
    public func incidentView(at now: Instant, expected: Set<AgentID>, critical: Set<AgentID>) -> [IncidentObservation.Agent] {
        state.withLock { state in
            var agents: [IncidentObservation.Agent] = []
            agents.reserveCapacity(state.agents.count)
            state.agents.updateEach { id, agent in
                let judged = agent.judgement(at: now, expected: expected.contains(id), staleAfter: settings.staleAfter)
                if judged.condition.isOutOnPurpose { return }
                agents.append(
                    IncidentObservation.Agent(
                        name: agent.row.name, critical: critical.contains(id), capabilities: agent.row.capabilities,
                        down: judged.condition.isFailure, healthy: judged.healthy, counted: judged.counted))
            }
            return agents
        }
    }

    /// Live agents with `capability`, by name: the members of the orphan-migration ring.
    public func liveAgents(capability: String, at now: Instant) -> [(id: AgentID, name: String)] {
        state.withLock { state in
            var live: [(id: AgentID, name: String)] = []
            state.agents.forEachInPlace { id, agent in
                guard agent.row.capabilities.contains(capability), !agent.quarantined, agent.health.condition == .alive,
                    agent.state(at: now, staleAfter: settings.staleAfter) == .ready, agent.health.taskLimit(at: now) != 0
                else { return }
                live.append((id, agent.row.name))
            }
            return live.sorted { $0.name < $1.name }
        }
    }

    // MARK: - Group breakers

    /// An agent failed: counts against the breaker of each of its capabilities.
    public func recordGroupFailure(of agent: String, capabilities: [String], at now: Instant) -> [(group: String, transition: GroupBreaker.Transition)] {
        state.withLock { state in
            var transitions: [(String, GroupBreaker.Transition)] = []
            for capability in capabilities {
                var breaker = state.groups[capability] ?? GroupBreaker(settings: settings.groupBreaker)
                if let transition = breaker.recordFailure(of: agent, at: now) { transitions.append((capability, transition)) }
                state.groups[capability] = breaker
            }
            return transitions
        }
    }

    public func tickGroupBreakers(at now: Instant) -> [(group: String, transition: GroupBreaker.Transition)] {
        state.withLock { state in
            var transitions: [(String, GroupBreaker.Transition)] = []
            for capability in Array(state.groups.keys) {
                var probe = false
                state.agents.forEachInPlace { _, agent in
                    if !probe, agent.health.condition == .alive, agent.row.capabilities.contains(capability) { probe = true }
                }
                if let transition = state.groups[capability]?.tick(at: now, probeHealthy: probe) {
                    transitions.append((capability, transition))
                }
                if state.groups[capability]?.state == .closed && state.groups[capability]?.recentFailures == 0 {
                    state.groups[capability] = nil
                }
            }
            return transitions
        }
    }

    public func isGroupBreakerOpen(_ capability: String) -> Bool {
        state.withLock { $0.groups[capability]?.isOpen ?? false }
    }

    public func openGroupBreakers() -> [String] {
        state.withLock { $0.groups.filter { $0.value.isOpen }.map(\.key) }.sorted()
    }

    /// A manifest changed an agent's class or capabilities.
    /// A manifest's `max_concurrency`: the flow gate of seed 000.
    public func setMaxConcurrency(_ id: AgentID, _ limit: Int?) {
        state.withLock { $0.agents[id]?.health.maxConcurrency = limit }
    }

    public func updateProfile(_ id: AgentID, agentClass: AgentClass, capabilities: [String]) {
        state.withLock { state in
            state.agents[id]?.row.agentClass = agentClass
            state.agents[id]?.row.capabilities = capabilities
        }
    }
}
