/// What each degradation level does (seed 001 §6.3), as decisions the shell carries out.
/// Task priorities are the seed's: 0 background, 1 low, 2 normal, 3 critical.
public struct DegradationPolicy: Sendable, Equatable {
    public let level: DegradationLevel

    public init(level: DegradationLevel) {
        self.level = level
    }

    /// What happens to a new task at this level, by its priority.
    public enum TaskDisposition: Sendable, Equatable {
        case route
        /// Seed "queue non-urgent operations": accepted, and routed once the level allows it
        /// (or dropped when its time to live runs out first).
        case queue
        /// Seed "disable non-critical background tasks": answered SKIP `shed`.
        case shed
    }

    /// Tasks at or above this priority are routed now.
    public var minimumPriority: Int {
        switch level {
        case .full: 0
        case .light: 1
        case .moderate: 2
        case .severe, .emergency: 3
        }
    }

    /// Tasks below this priority are shed rather than queued: background work (0) from LIGHT on.
    public var shedBelowPriority: Int {
        level == .full ? 0 : 1
    }

    public func disposition(priority: Int) -> TaskDisposition {
        if priority >= minimumPriority { return .route }
        return priority < shedBelowPriority ? .shed : .queue
    }

    /// Seed LIGHT "increase retry timeouts": from LIGHT on, a task handed to an agent waits
    /// this many leases for its result before it is retried elsewhere, so that a slow but
    /// working agent is not abandoned while the mesh is short of agents.
    public var retryTimeoutFactor: Int {
        level == .full ? 1 : 2
    }

    /// Canaries hold their stage from MODERATE on: new load goes where it is known to work.
    public var canariesAdvance: Bool {
        level <= .light
    }

    /// Seed MODERATE "disable scatter operations over 1000 agents".
    public var maxScatterAgents: Int? {
        level == .moderate ? 1000 : nil
    }

    /// Seed SEVERE "human approval for all mesh-wide operations": ask and broadcast need an
    /// operator's credential and `"approved": true`, and are audited with the operator's uid.
    public var scatterNeedsApproval: Bool {
        level >= .severe
    }

    public enum ScatterVerdict: Sendable, Equatable {
        case allowed
        /// DEGRADED_SEVERE and worse: only with an operator's approval (asked first, whatever
        /// the priority, so that the answer names what would let it go).
        case needsApproval
        /// Below the level's minimum priority (when no approval is asked).
        case shed(minimumPriority: Int)
        /// More agents than the level lets one operation reach.
        case tooManyAgents(targets: Int, limit: Int)
    }

    /// Whether an ask or broadcast of `priority` to `targets` agents may go at this level.
    public func scatterVerdict(priority: Int, approved: Bool, targets: Int) -> ScatterVerdict {
        if scatterNeedsApproval && !approved { return .needsApproval }
        if priority < minimumPriority && !scatterNeedsApproval { return .shed(minimumPriority: minimumPriority) }
        if let limit = maxScatterAgents, targets > limit { return .tooManyAgents(targets: targets, limit: limit) }
        return .allowed
    }

    /// Seed EMERGENCY "preserve state to persistent storage" and "alert all human operators":
    /// entering EMERGENCY takes a snapshot and raises an alert (LED, event, audit, incident).
    public var preservesStateAndAlerts: Bool {
        level == .emergency
    }

    /// The seed's restrictions in words, for status and docs.
    public var restrictions: [String] {
        var result: [String] = []
        if shedBelowPriority > 0 { result.append("background tasks (priority 0) are shed") }
        if minimumPriority > shedBelowPriority {
            result.append("tasks of priority \(shedBelowPriority)–\(minimumPriority - 1) are queued until the node recovers")
        }
        if retryTimeoutFactor > 1 { result.append("task leases are \(retryTimeoutFactor)× longer before a retry") }
        if !canariesAdvance { result.append("canaries hold their stage") }
        if let limit = maxScatterAgents { result.append("ask and broadcast to more than \(limit) agents are refused") }
        if scatterNeedsApproval { result.append("ask and broadcast need an operator's approval") }
        if !AuthorityTier.l1.runsAutomatically(at: level) { result.append("L1 healing waits for an operator") }
        if !AuthorityTier.l0.runsAutomatically(at: level) { result.append("all automatic healing stops; restarts wait for an operator") }
        if preservesStateAndAlerts { result.append("a snapshot preserves the state and operators are alerted") }
        return result
    }

    /// The share of counted agents that are healthy (READY or CONFLICT, alive): the degradation
    /// level's and mesh_availability's measure. No agent to count is a healthy mesh for the level
    /// (nothing is failing) and nil for availability (nothing to be available).
    public static func healthyShare(healthy: Int, of counted: Int) -> Double? {
        counted == 0 ? nil : Double(healthy) / Double(counted)
    }

    public static func level(healthyRatio: Double, agents: Int, memoryOverBudget: Bool, thresholds: DegradationLevel.Thresholds = .init())
        -> DegradationLevel
    {
        let byHealth = DegradationLevel(healthyRatio: healthyRatio, agents: agents, thresholds: thresholds)
        // Over the RAM budget: shed like MODERATE before the kernel's OOM killer picks a victim.
        return memoryOverBudget ? max(byHealth, .moderate) : byHealth
    }
}
