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
