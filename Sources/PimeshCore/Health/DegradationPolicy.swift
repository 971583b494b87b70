/// What each degradation level does (seed 001 §6.3), as decisions the shell carries out.
/// Task priorities are the seed's: 0 background, 1 low, 2 normal, 3 critical.
public struct DegradationPolicy: Sendable, Equatable {
    public let level: DegradationLevel

    public init(level: DegradationLevel) {
        self.level = level
    }

    /// New tasks below this priority are shed (answered SKIP `shed`).
    public var minimumPriority: Int {
        switch level {
        case .full: 0
        case .light: 1
        case .moderate: 2
        case .severe, .emergency: 3
        }
    }

    /// Canaries hold their stage from MODERATE on: new load goes where it is known to work.
    public var canariesAdvance: Bool {
        level <= .light
    }

    /// Ask and broadcast to more than this many agents are refused (seed: "Disable scatter
    /// operations over 1000 agents"; from SEVERE "human approval for mesh-wide operations").
    public var maxScatterAgents: Int? {
        switch level {
        case .full, .light: nil
        case .moderate: 1000
        case .severe, .emergency: 0
        }
    }

    /// The seed's restrictions in words, for status and docs.
    public var restrictions: [String] {
        var result: [String] = []
        if minimumPriority > 0 { result.append("tasks below priority \(minimumPriority) are shed") }
        if !canariesAdvance { result.append("canaries hold their stage") }
        if let limit = maxScatterAgents {
            result.append(limit == 0 ? "ask and broadcast are refused" : "ask and broadcast to more than \(limit) agents are refused")
        }
        if !AuthorityTier.l1.runsAutomatically(at: level) { result.append("L1 healing waits for an operator") }
        if !AuthorityTier.l0.runsAutomatically(at: level) { result.append("all automatic healing stops; restarts wait for an operator") }
        return result
    }

    public static func level(healthyRatio: Double, agents: Int, memoryOverBudget: Bool, thresholds: DegradationLevel.Thresholds = .init())
        -> DegradationLevel
    {
        let byHealth = DegradationLevel(healthyRatio: healthyRatio, agents: agents, thresholds: thresholds)
        // Over the RAM budget: shed like MODERATE before the kernel's OOM killer picks a victim.
        return memoryOverBudget ? max(byHealth, .moderate) : byHealth
    }
}
