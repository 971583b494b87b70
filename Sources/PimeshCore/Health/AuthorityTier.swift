/// Seed 000 "ConsensusBroadcast" authority tiers, on one node: the lead is the only voter, so
/// quorum becomes "how bad things are". L0 actions run on their own unless the node is in
/// EMERGENCY; L1 actions run on their own while the node is MODERATE or better; L2 actions
/// always wait for an operator (`pimesh heal`).
public enum AuthorityTier: String, Sendable, Equatable, Codable, CaseIterable, Comparable {
    case l0 = "L0"
    case l1 = "L1"
    case l2 = "L2"

    /// The seed's response-time target for the tier.
    public var slaMs: Int {
        switch self {
        case .l0: 100
        case .l1: 1000
        case .l2: 10_000
        }
    }

    public func runsAutomatically(at level: DegradationLevel) -> Bool {
        switch self {
        case .l0: level < .emergency
        case .l1: level <= .moderate
        case .l2: false
        }
    }

    public static func < (lhs: AuthorityTier, rhs: AuthorityTier) -> Bool {
        lhs.slaMs < rhs.slaMs
    }
}

/// A healing step the lead can take, with the tier that may take it.
public enum HealingAction: String, Sendable, Equatable, Codable, CaseIterable {
    /// Start a supervised agent again after it exited (restart policy and backoff apply).
    case restartExited = "restart_exited"
    /// Kill and start a supervised agent that is hung or looping.
    case restartUnresponsive = "restart_unresponsive"
    /// Run an attached agent's heal command (`podman restart {name}`).
    case runHealCommand = "run_heal_command"
    /// Send the tasks of a failed agent to live ones.
    case migrateOrphans = "migrate_orphans"
    /// Move queued work from the busiest agent to the idlest.
    case stealWork = "steal_work"
    /// Restart a supervised agent over its own memory limit.
    case restartOverMemory = "restart_over_memory"
    /// Start an agent whose restarts keep failing after the backoff reached its maximum.
    case restartGivenUp = "restart_given_up"

    public var tier: AuthorityTier {
        switch self {
        case .restartExited, .migrateOrphans, .stealWork: .l0
        case .restartUnresponsive, .runHealCommand, .restartOverMemory: .l1
        case .restartGivenUp: .l2
        }
    }

    /// What becomes of a step parked "awaiting operator", judged again at each health tick.
    public enum ParkedVerdict: Sendable, Equatable {
        /// Still needed and still not allowed: it waits.
        case wait
        /// No longer needed: the agent recovered (or something else started it).
        case drop
        /// The level allows it now: carry it out.
        case carryOut
    }

    /// `running`: the agent's process runs; `alive`: it heartbeats; `overMemoryLimit`: its last
    /// reading was over its own limit. Only an operator ends `restart_given_up`.
    public func rejudge(at level: DegradationLevel, running: Bool, alive: Bool, overMemoryLimit: Bool) -> ParkedVerdict {
        switch self {
        case .restartGivenUp: return .wait
        case .migrateOrphans, .stealWork: return .drop
        case .restartExited: if running { return .drop }
        case .restartUnresponsive, .runHealCommand: if alive { return .drop }
        case .restartOverMemory: if !overMemoryLimit { return .drop }
        }
        return tier.runsAutomatically(at: level) ? .carryOut : .wait
    }
}

/// How long each tier's healing steps took from the moment they were due (the rule said so:
/// an exit's backoff ended, an agent stayed unresponsive long enough, an operator was asked)
/// to the moment they were carried out, against the tier's SLA (seed 000: L0 100 ms, L1 1 s,
/// L2 10 s, the last a person's). Fixed memory: counts, the worst, and the last 100 times.
public struct TierResponseTimes: Sendable {
    public struct Summary: Sendable, Equatable {
        public var tier: AuthorityTier
        public var steps: Int
        public var withinSLA: Int
        /// `CoordinationKPIs.seedP95` of the last 100 steps.
        public var p95Ms: Double?
        public var worstMs: Double?
    }

    private var steps: [AuthorityTier: Int] = [:]
    private var within: [AuthorityTier: Int] = [:]
    private var worst: [AuthorityTier: Double] = [:]
    private var recent: [AuthorityTier: SampleRing] = [:]

    public init() {}

    public mutating func record(_ tier: AuthorityTier, tookMs: Double) {
        let ms = max(0, tookMs)
        steps[tier, default: 0] += 1
        if ms <= Double(tier.slaMs) { within[tier, default: 0] += 1 }
        worst[tier] = max(worst[tier] ?? 0, ms)
        recent[tier, default: SampleRing(capacity: 100)].add(ms)
    }

    public var summaries: [Summary] {
        AuthorityTier.allCases.map { tier in
            Summary(
                tier: tier, steps: steps[tier] ?? 0, withinSLA: within[tier] ?? 0,
                p95Ms: recent[tier].flatMap { CoordinationKPIs.seedP95(Array($0.samples)) }, worstMs: worst[tier])
        }
    }
}

/// What the health tick does about an agent that stopped answering (hung, looping, or a
/// suspected attached agent): nothing yet, heal it now, or park the step for an operator. The
/// delay and the tier gate live here so that the shell only carries the decision out.
public enum UnresponsiveHealing: Sendable, Equatable {
    /// Not unresponsive any more, or not for long enough.
    case notYet
    case heal(HealingAction, due: Instant, reason: String)
    case awaitOperator(HealingAction, reason: String)

    /// `since`: when it became unresponsive; `after`: `supervision.heal_after_ms` (2 s).
    public static func decide(
        condition: AgentCondition, since: Instant, now: Instant, after: Duration, supervised: Bool, level: DegradationLevel
    ) -> UnresponsiveHealing {
        guard condition == .hung || condition == .looping || condition == .suspected else { return .notYet }
        let due = since + after
        guard now >= due else { return .notYet }
        let action: HealingAction = supervised ? .restartUnresponsive : .runHealCommand
        let reason = "\(condition.rawValue) for \(Int64((now - since).milliseconds)) ms"
        return action.tier.runsAutomatically(at: level)
            ? .heal(action, due: due, reason: reason) : .awaitOperator(action, reason: "\(reason); the node is \(level.rawValue)")
    }
}
