/// Seed 001 degradation levels from the share of healthy (READY) agents: FULL ≥ 0.95,
/// LIGHT ≥ 0.80, MODERATE ≥ 0.60, SEVERE ≥ 0.30, EMERGENCY below.
public enum DegradationLevel: String, CaseIterable, Sendable, Codable, Comparable {
    case full = "FULL"
    case light = "LIGHT"
    case moderate = "MODERATE"
    case severe = "SEVERE"
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
