/// Seed 001 §5.1 `classify_conflict_priority` and `suggest_resolution`, plus what the lead
/// does about the agent: a critical conflict (possible corruption or attack) quarantines it.
public struct ConflictPolicy: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Seed: CONTEXT_DIVERGENCE is high priority when the divergence is deeper than 10.
        public var deepDivergence: Int
        /// Seed: DATA_CONTRADICTION is high priority when more than 100 agents are affected.
        public var wideContradiction: Int
        /// Conflicts at or above this priority quarantine the reporting agent.
        public var quarantineAtPriority: Int

        public init(deepDivergence: Int = 10, wideContradiction: Int = 100, quarantineAtPriority: Int = 4) {
            self.deepDivergence = deepDivergence
            self.wideContradiction = wideContradiction
            self.quarantineAtPriority = quarantineAtPriority
        }
    }

    public struct Classification: Sendable, Equatable {
        /// 0 background … 4 critical (seed's scale).
        public var priority: Int
        public var strategy: String
        public var steps: [String]
        public var quarantinesAgent: Bool
        /// Seed 001 `classify_conflict_priority`: how soon it must be resolved; nil "when convenient".
        public var resolveWithin: Duration?
        public var escalation: ConflictEscalation

        /// Seed: priority ≥ 3 is escalated beyond the cluster.
        public var escalates: Bool { escalation != .none }
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    public func classify(_ detail: ConflictDetail) -> Classification {
        let priority: Int
        switch detail.type {
        case .temporalParadox, .hashMismatch: priority = 4
        case .contextDivergence: priority = detail.divergenceDepth > settings.deepDivergence ? 3 : 2
        case .dataContradiction: priority = detail.affectedAgents > settings.wideContradiction ? 3 : 2
        case .other: priority = 2
        case .capabilityMismatch: priority = 1
        }
        let (strategy, steps) = Self.resolution(detail.type)
        return Classification(
            priority: priority, strategy: strategy, steps: steps, quarantinesAgent: priority >= settings.quarantineAtPriority,
            resolveWithin: Self.resolveWithin(priority: priority), escalation: ConflictEscalation(priority: priority))
    }

    /// Seed 001: "0 = Background, resolve when convenient; 1 = Low, resolve within hour;
    /// 2 = Medium, resolve within 10 minutes; 3 = High, resolve within 1 minute; 4 = Critical,
    /// immediate orchestrator attention".
    public static func resolveWithin(priority: Int) -> Duration? {
        switch priority {
        case ...0: nil
        case 1: .seconds(3600)
        case 2: .seconds(600)
        case 3: .seconds(60)
        default: .zero
        }
    }

    /// Past `maxTracked` unresolved conflicts the lead stops timing one: the oldest of the
    /// lowest priority, so that a burst of minor conflicts never hides a critical one.
    /// `priorities` is oldest first; returns the index to drop, or nil when within the bound.
    public static func untrackedIndex(priorities: [Int], maxTracked: Int) -> Int? {
        guard priorities.count > maxTracked, let lowest = priorities.min() else { return nil }
        return priorities.firstIndex(of: lowest)
    }

    /// An unresolved conflict `ageMs` old is overdue once its resolution time has passed;
    /// priority 4 ("immediate") is overdue from the start.
    public static func isOverdue(priority: Int, ageMs: Int64) -> Bool {
        guard let within = resolveWithin(priority: priority) else { return false }
        return within == .zero || Double(ageMs) > within.milliseconds
    }

    static func resolution(_ type: ConflictType) -> (String, [String]) {
        switch type {
        case .contextDivergence:
            ("BRANCH_AND_RECONCILE", [
                "create parallel context branches", "let both branches operate independently", "identify convergence points",
                "human review of irreconcilable differences",
            ])
        case .dataContradiction:
            ("PROVENANCE_TRACE", [
                "trace both values to origin", "identify where divergence occurred", "prefer value with stronger provenance",
                "update weaker source",
            ])
        case .temporalParadox:
            ("CLOCK_RECONCILIATION", [
                "check Lamport timestamps", "verify causal ordering", "identify clock drift source", "rebuild causal chain",
            ])
        case .hashMismatch:
            ("INTEGRITY_CHECK", [
                "quarantine the agent", "compare the payload hash with the sender's", "re-fetch from a trusted source",
                "release only after an operator's review",
            ])
        case .capabilityMismatch:
            ("REROUTE", ["correct the agent's advertised capabilities", "route the work to a capable agent"])
        case .other:
            ("MANUAL_REVIEW", ["inspect the conflicting values", "decide which to keep"])
        }
    }
}

/// Seed 001 `handle_conflict`: priority ≥ 3 goes to the sector coordinator, ≥ 4 to the
/// orchestrator as well. On a node the sector coordinator is the lead's incident engine (an
/// incident at once, SEV2); the orchestrator is upstream: a SEV1 incident, which the incident
/// pusher carries to the coordinator.
public enum ConflictEscalation: String, Sendable, Equatable, Codable {
    case none
    case sectorCoordinator = "sector_coordinator"
    case orchestrator

    public init(priority: Int) {
        switch priority {
        case ...2: self = .none
        case 3: self = .sectorCoordinator
        default: self = .orchestrator
        }
    }
}
