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
        /// Seed: priority ≥ 3 is escalated beyond the cluster.
        public var escalates: Bool
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
            escalates: priority >= 3)
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
