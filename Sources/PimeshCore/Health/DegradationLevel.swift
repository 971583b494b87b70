/// Seed 001 §6.3 operational modes from the share of healthy agents (`AgentCondition.isHealthy`):
/// FULL ≥ 0.95, DEGRADED_LIGHT ≥ 0.80, DEGRADED_MODERATE ≥ 0.60, DEGRADED_SEVERE ≥ 0.30,
/// EMERGENCY below. The names are the seed's, as status, metrics and the audit log show them.
public enum DegradationLevel: String, CaseIterable, Sendable, Codable, Comparable {
    case full = "FULL"
    case light = "DEGRADED_LIGHT"
    case moderate = "DEGRADED_MODERATE"
    case severe = "DEGRADED_SEVERE"
    case emergency = "EMERGENCY"

    public struct Thresholds: Sendable, Equatable {
        public var full: Double
        public var light: Double
        public var moderate: Double
        public var severe: Double

        public init(full: Double = 0.95, light: Double = 0.80, moderate: Double = 0.60, severe: Double = 0.30) {
            self.full = full
            self.light = light
            self.moderate = moderate
            self.severe = severe
        }
    }

    /// With no agents there is nothing to degrade: FULL.
    public init(healthyRatio: Double, agents: Int, thresholds: Thresholds = Thresholds()) {
        guard agents > 0 else {
            self = .full
            return
        }
        switch healthyRatio {
        case thresholds.full...: self = .full
        case thresholds.light...: self = .light
        case thresholds.moderate...: self = .moderate
        case thresholds.severe...: self = .severe
        default: self = .emergency
        }
    }

    private var rank: Int {
        Self.allCases.firstIndex(of: self)!
    }

    public static func < (lhs: DegradationLevel, rhs: DegradationLevel) -> Bool {
        lhs.rank < rhs.rank
    }
}
