/// What the lead knows at one health tick, as the incident triggers read it.
public struct IncidentObservation: Sendable {
    public struct Agent: Sendable, Equatable {
        public var name: String
        public var critical: Bool
        public var capabilities: [String]
        /// Failed (suspected, hung, looping, exited): `AgentCondition.isFailure`.
        public var down: Bool
        /// Alive and ready. An agent that restarts after a failure is neither down nor healthy
        /// until it heartbeats again: its incident is not mitigated before that.
        public var healthy: Bool
        /// Counted by the ratios (and the degradation level): not an agent in its start grace.
        /// Stopped, frozen, left and departed agents are not in the observation at all.
        public var counted: Bool

        public init(name: String, critical: Bool = false, capabilities: [String] = [], down: Bool, healthy: Bool, counted: Bool = true) {
            self.name = name
            self.critical = critical
            self.capabilities = capabilities
            self.down = down
            self.healthy = healthy
            self.counted = counted
        }
    }

    public var agents: [Agent]
    public var outcomes: TaskOutcomeWindow
    public var degradation: DegradationLevel
    /// Agents' memory against the RAM budget, when there is one.
    public var agentsMemoryBytes: UInt64?
    public var ramBudgetBytes: UInt64?
    /// Store, audit or snapshot integrity failures, disk full: `(what, detail)`.
    public var integrityFailures: [(String, String)]
    /// Supervised agents whose restarts were given up: they wait for `pimesh heal`.
    public var givenUp: [String] = []
    /// Agents held out of routing after a critical conflict.
    public var quarantined: [String] = []
    /// Agents that report CONFLICT (seed 001: not a failure, but not work either).
    public var conflicting: [String] = []
    /// Conflicts nobody has resolved yet (priority ≥ 1), with their age.
    public var unresolvedConflicts: [UnresolvedConflict] = []
    /// The node's own impedance score (0–1000).
    public var nodeScore: Int?
    /// The Pi's supply is low now (NodeReadings.underVoltage), or its firmware throttles the ARM.
    public var underVoltage = false
    public var throttled = false
    /// Coordination KPIs missing their seed targets.
    public var missedKPIs: [String] = []
    /// Agents an open incident holds that are not healthy again yet (restarted, not heartbeating):
    /// still out for "two or more critical agents down in one window", so that agents killed
    /// together are one SEV1 however the ticks fall between their exits.
    public var stillOut: Set<String> = []
    /// Agents a manifest names, whatever their state: the others only registered themselves
    /// (`IncidentBook.Settings.maxOpenForUndeclared`).
    public var declared: Set<String> = []

    public init(
        agents: [Agent], outcomes: TaskOutcomeWindow = TaskOutcomeWindow(), degradation: DegradationLevel = .full,
        agentsMemoryBytes: UInt64? = nil, ramBudgetBytes: UInt64? = nil, integrityFailures: [(String, String)] = []
    ) {
        self.agents = agents
        self.outcomes = outcomes
        self.degradation = degradation
        self.agentsMemoryBytes = agentsMemoryBytes
        self.ramBudgetBytes = ramBudgetBytes
        self.integrityFailures = integrityFailures
    }
}

/// A logged conflict without a resolution, as the triggers read it.
public struct UnresolvedConflict: Sendable, Equatable {
    public var seq: Int64
    public var agent: String
    public var priority: Int
    public var type: String
    /// Wall-clock age: conflicts outlive a restart of the lead.
    public var ageMs: Int64

    public init(seq: Int64, agent: String, priority: Int, type: String, ageMs: Int64) {
        self.seq = seq
        self.agent = agent
        self.priority = priority
        self.type = type
        self.ageMs = ageMs
    }
}

/// One cause firing now. `cause` is the identity an incident is opened for: the same cause, or
/// a cause naming an agent an open incident already holds, joins that incident.
public struct IncidentTrigger: Sendable, Equatable {
    public var cause: String
    public var kind: Kind
    public var severity: Severity
    public var summary: String
    public var agents: [String]
    public var capabilities: [String]
    /// It must hold this long before it opens anything (seed 003's `for: 5m`).
    public var sustain: Duration

    public enum Kind: String, Codable, Sendable, CaseIterable {
        case agentDown = "agent_down"
        case criticalAgentsDown = "critical_agents_down"
        case capabilityUncovered = "capability_uncovered"
        case agentsUnhealthy = "agents_unhealthy"
        case taskFailures = "task_failures"
        case massFailure = "mass_failure"
        case earlyWarning = "early_warning"
        case integrity
        case degradation
        case resources
        case conflict
    }

    public init(
        cause: String, kind: Kind, severity: Severity, summary: String, agents: [String] = [], capabilities: [String] = [],
        sustain: Duration = .zero
    ) {
        self.cause = cause
        self.kind = kind
        self.severity = severity
        self.summary = summary
        self.agents = agents
        self.capabilities = capabilities
        self.sustain = sustain
    }
}

/// The triggers of docs/incidents.md, each a rule with its numbers. Ratios need a minimum
/// sample: seed 003's `rate(...[5m]) > 0.5` is read as "> 50 % of at least 10 outcomes".
public struct IncidentTriggers: Sendable {
    public struct Settings: Sendable, Equatable {
        public var minimumSample = 10
        /// > this share of agents unhealthy (with at least `minimumSample` agents): SEV2.
        public var unhealthyAgentsRatio = 0.25
        /// Over five minutes: success < 99 % SEV3, < 95 % SEV1 (seed 003's mass-failure line; it
        /// covers seed 004's "> 25 % failing" SEV2 as well).
        public var successWarning = 0.99
        public var successMass = 0.95
        /// Seed 003's mass failure: ≥ 5 failures within an hour across different capabilities,
        /// or ≥ 3 capability groups above 50 % failing; either held `massFailureSustain`.
        public var massFailureCount = 5
        public var massFailureSpan = Duration.seconds(3600)
        public var massFailureGroups = 3
        public var massFailureGroupRatio = 0.5
        public var massFailureSustain = Duration.seconds(300)
        /// Seed 001: a node score above this is degraded.
        public var strainedNodeScore = 800
        /// SEV4: a KPI at this share of its limit (seed 004's "75 % of SLO limit").
        public var earlyWarningShare = 0.75
        /// 75 % of the 1 % error budget, as a failing share (written out: computed, it would sit
        /// a rounding error above 75/10,000 and miss it).
        public var errorBudgetWarning = 0.0075

        public init() {}
    }

    public var settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    @_optimize(size)  // cold: a health tick with changes, else every few seconds (the 25 MB budget)
    public func evaluate(_ observation: IncidentObservation, at now: Instant) -> [IncidentTrigger] {
        var triggers: [IncidentTrigger] = []
        let down = observation.agents.filter(\.down)
        for agent in down {
            triggers.append(
                IncidentTrigger(
                    cause: "agent_down:\(agent.name)", kind: .agentDown, severity: agent.critical ? .sev2 : .sev3,
                    summary: "agent \(agent.name) is down" + (agent.critical ? " (critical)" : ""), agents: [agent.name],
                    capabilities: agent.capabilities))
        }
        for name in observation.givenUp {
            triggers.append(
                IncidentTrigger(
                    cause: "agent_down:\(name)", kind: .agentDown, severity: .sev2,
                    summary: "\(name)'s restarts were given up; it waits for `pimesh heal \(name)`", agents: [name]))
        }
        for name in observation.quarantined {
            triggers.append(
                IncidentTrigger(
                    cause: "quarantined:\(name)", kind: .conflict, severity: .sev2,
                    summary: "\(name) is quarantined after a critical conflict", agents: [name]))
        }
        // Seed 001 §5.1: escalation at priority ≥ 3 at once; below, an incident only once the
        // resolution time (1 h, 10 min) has passed unresolved. One incident per agent and kind.
        var conflictTriggers: [String: IncidentTrigger] = [:]
        for conflict in observation.unresolvedConflicts {
            let escalation = ConflictEscalation(priority: conflict.priority)
            let trigger: IncidentTrigger
            switch escalation {
            case .orchestrator, .sectorCoordinator:
                trigger = IncidentTrigger(
                    cause: "conflict_escalated:\(conflict.agent)", kind: .conflict, severity: escalation == .orchestrator ? .sev1 : .sev2,
                    summary: "\(conflict.agent) reported a priority \(conflict.priority) \(conflict.type) conflict (#\(conflict.seq)), "
                        + "escalated to the \(escalation == .orchestrator ? "orchestrator" : "sector coordinator"); "
                        + "resolve it with `pimesh conflicts resolve \(conflict.seq)`",
                    agents: [conflict.agent])
            case .none:
                guard ConflictPolicy.isOverdue(priority: conflict.priority, ageMs: conflict.ageMs) else { continue }
                trigger = IncidentTrigger(
                    cause: "conflict_overdue:\(conflict.agent)", kind: .conflict, severity: conflict.priority >= 2 ? .sev3 : .sev4,
                    summary: "\(conflict.agent)'s priority \(conflict.priority) \(conflict.type) conflict (#\(conflict.seq)) is unresolved past "
                        + "its \(conflict.priority >= 2 ? "10 min" : "1 h") deadline; resolve it with `pimesh conflicts resolve \(conflict.seq)`",
                    agents: [conflict.agent])
            }
            if let held = conflictTriggers[trigger.cause], held.severity >= trigger.severity { continue }
            conflictTriggers[trigger.cause] = trigger
        }
        triggers.append(contentsOf: conflictTriggers.keys.sorted().map { conflictTriggers[$0]! })
        if !observation.conflicting.isEmpty {
            triggers.append(
                IncidentTrigger(
                    cause: "agents_in_conflict", kind: .conflict, severity: .sev4,
                    summary: "\(observation.conflicting.count) agent(s) report CONFLICT", agents: observation.conflicting))
        }
        if observation.underVoltage {
            triggers.append(
                IncidentTrigger(
                    cause: "power:under_voltage", kind: .resources, severity: .sev2,
                    summary: "the Pi's supply is below 4.63 V: a brown-out can corrupt the SD card; use a 5.1 V 3 A supply and a short cable"))
        } else if observation.throttled {
            triggers.append(
                IncidentTrigger(
                    cause: "power:throttled", kind: .resources, severity: .sev3,
                    summary: "the firmware throttles the ARM clock (heat or supply): every agent runs slower"))
        }
        if let score = observation.nodeScore, score > settings.strainedNodeScore {
            triggers.append(
                IncidentTrigger(
                    cause: "node_strained", kind: .resources, severity: .sev3,
                    summary: "the node's impedance score is \(score), above \(settings.strainedNodeScore): heat, memory, CPU or I/O"))
        }
        for kpi in observation.missedKPIs {
            triggers.append(
                IncidentTrigger(cause: "kpi_missed:\(kpi)", kind: .earlyWarning, severity: .sev4, summary: "\(kpi) misses its seed target"))
        }
        let criticalOut = observation.agents.filter { $0.critical && ($0.down || (!$0.healthy && observation.stillOut.contains($0.name))) }
        if criticalOut.count >= 2, criticalOut.contains(where: \.down) {
            triggers.append(
                IncidentTrigger(
                    cause: "critical_agents_down", kind: .criticalAgentsDown, severity: .sev1,
                    summary: "\(criticalOut.count) critical agents are down", agents: criticalOut.map(\.name)))
        }
        triggers += uncoveredCapabilities(observation.agents)
        let countedAgents = observation.agents.filter(\.counted)
        let counted = countedAgents.count
        let unhealthy = countedAgents.filter { !$0.healthy }
        if counted >= settings.minimumSample, Double(unhealthy.count) / Double(counted) > settings.unhealthyAgentsRatio {
            triggers.append(
                IncidentTrigger(
                    cause: "agents_unhealthy", kind: .agentsUnhealthy, severity: .sev2,
                    summary: "\(unhealthy.count) of \(counted) agents are unhealthy", agents: unhealthy.map(\.name)))
        }
        triggers += taskTriggers(observation.outcomes, at: now)
        if let budget = observation.ramBudgetBytes, budget > 0, let used = observation.agentsMemoryBytes {
            let share = Double(used) / Double(budget)
            if used > budget {
                triggers.append(
                    IncidentTrigger(
                        cause: "ram_over_budget", kind: .resources, severity: .sev2,
                        summary: "agents use \(used >> 20) MiB, over the \(budget >> 20) MiB RAM budget"))
            } else if share >= settings.earlyWarningShare {
                triggers.append(
                    IncidentTrigger(
                        cause: "early_warning:ram", kind: .earlyWarning, severity: .sev4,
                        summary: "agents use \(Int(share * 100)) % of the RAM budget"))
            }
        }
        for (what, detail) in observation.integrityFailures {
            triggers.append(IncidentTrigger(cause: "integrity:\(what)", kind: .integrity, severity: .sev1, summary: "\(what): \(detail)"))
        }
        // The level is a ratio of agents: on a node with a handful, one agent restarting moves it
        // several levels, which the agent-down triggers already cover.
        if counted >= settings.minimumSample, let severity = Self.severity(of: observation.degradation) {
            triggers.append(
                IncidentTrigger(
                    cause: "degradation", kind: .degradation, severity: severity,
                    summary: "the node is degraded to \(observation.degradation.rawValue)", agents: unhealthy.map(\.name)))
        }
        return triggers
    }

    /// LIGHT is an early warning; each level further is one severity worse.
    public static func severity(of level: DegradationLevel) -> Severity? {
        switch level {
        case .full: nil
        case .light: .sev4
        case .moderate: .sev3
        case .severe: .sev2
        case .emergency: .sev1
        }
    }

    /// A capability that some agent offers, every one of whose agents is down.
    func uncoveredCapabilities(_ agents: [IncidentObservation.Agent]) -> [IncidentTrigger] {
        var offered: [String: (down: [String], live: Int)] = [:]
        for agent in agents {
            for capability in agent.capabilities {
                var entry = offered[capability] ?? ([], 0)
                if agent.down { entry.down.append(agent.name) } else if agent.healthy { entry.live += 1 }
                offered[capability] = entry
            }
        }
        return offered.filter { !$0.value.down.isEmpty && $0.value.live == 0 }.sorted { $0.key < $1.key }.map { capability, entry in
            IncidentTrigger(
                cause: "capability_uncovered:\(capability)", kind: .capabilityUncovered, severity: .sev1,
                summary: "no live agent offers \(capability)", agents: entry.down, capabilities: [capability])
        }
    }

    func taskTriggers(_ outcomes: TaskOutcomeWindow, at now: Instant) -> [IncidentTrigger] {
        var triggers: [IncidentTrigger] = []
        let recent = outcomes.recent(at: now)
        var total = TaskOutcomeWindow.Counts()
        for counts in recent.values {
            total.succeeded += counts.succeeded
            total.failed += counts.failed
        }
        if total.total >= settings.minimumSample {
            let success = total.successRatio
            let percent = "\(Self.percent(success)) % of \(total.total) tasks succeeded over 5 min"
            let failing = recent.filter { $0.value.failed > 0 }.keys.sorted()
            if success < settings.successMass {
                triggers.append(
                    IncidentTrigger(cause: "task_failures", kind: .taskFailures, severity: .sev1, summary: percent, capabilities: failing))
            } else if success < settings.successWarning {
                triggers.append(
                    IncidentTrigger(cause: "task_failures", kind: .taskFailures, severity: .sev3, summary: percent, capabilities: failing))
            } else if total.failingRatio >= settings.errorBudgetWarning && total.failed > 0 {
                triggers.append(
                    IncidentTrigger(
                        cause: "early_warning:error_budget", kind: .earlyWarning, severity: .sev4,
                        summary: percent + ": the error budget is burning toward its limit", capabilities: failing))
            }
        }
        let lastHour = outcomes.failures(within: settings.massFailureSpan, at: now)
        let failingCapabilities = Set(lastHour.map(\.capability))
        let failingGroups = recent.filter { $0.value.total >= settings.minimumSample && $0.value.failingRatio > settings.massFailureGroupRatio }
        let byCount = lastHour.count >= settings.massFailureCount && failingCapabilities.count >= 2
        let byGroups = failingGroups.count >= settings.massFailureGroups
        if byCount || byGroups {
            let summary =
                byGroups
                ? "\(failingGroups.count) capability groups above \(Self.percent(settings.massFailureGroupRatio)) % failing"
                : "\(lastHour.count) failures within \(Int(settings.massFailureSpan.milliseconds / 60_000)) min across \(failingCapabilities.count) capabilities"
            triggers.append(
                IncidentTrigger(
                    cause: "mass_failure", kind: .massFailure, severity: .sev1, summary: summary,
                    agents: Array(Set(lastHour.map(\.agent))).sorted(),
                    capabilities: byGroups ? failingGroups.keys.sorted() : failingCapabilities.sorted(), sustain: settings.massFailureSustain))
        }
        return triggers
    }

    /// One decimal, never rounded up across a threshold in what people read (99.95 shows 99.9).
    static func percent(_ ratio: Double) -> String {
        let tenths = Int((ratio * 1000).rounded(.down))
        return "\(tenths / 10).\(tenths % 10)"
    }
}
