/// Seed 001 §5.2 `trinary_quorum_check`: enough READY (+1), few CONFLICT (−1), few still in
/// TRANSIT (0). The branches are checked in the seed's order.
public struct TrinaryQuorum: Sendable {
    public struct Settings: Sendable, Equatable {
        public var requiredReadyRate: Double
        public var maxConflictRate: Double
        public var maxTransitRate: Double

        public init(requiredReadyRate: Double = 0.95, maxConflictRate: Double = 0.05, maxTransitRate: Double = 0.10) {
            self.requiredReadyRate = requiredReadyRate
            self.maxConflictRate = maxConflictRate
            self.maxTransitRate = maxTransitRate
        }
    }

    public enum Decision: String, Sendable, Equatable {
        case proceed = "PROCEED"
        case wait = "WAIT"
        case resolveConflicts = "RESOLVE_CONFLICTS"
        case retry = "RETRY"
    }

    public struct Result: Sendable, Equatable {
        public var decision: Decision
        public var ready: Int
        public var conflict: Int
        public var transit: Int
        /// `ready_rate − conflict_rate / 2` when the quorum is reached, else 0.
        public var confidence: Double
        public var reason: String
        public var recommendation: String

        public var achieved: Bool { decision == .proceed }
        public var total: Int { ready + conflict + transit }
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    public func check(ready: Int, conflict: Int, transit: Int) -> Result {
        let total = ready + conflict + transit
        func result(_ decision: Decision, confidence: Double = 0, _ reason: String, _ recommendation: String) -> Result {
            Result(
                decision: decision, ready: ready, conflict: conflict, transit: transit, confidence: confidence, reason: reason,
                recommendation: recommendation)
        }
        guard total > 0 else {
            return result(.retry, "no agent was asked", "check that agents with the capability are READY")
        }
        let readyRate = Double(ready) / Double(total)
        let conflictRate = Double(conflict) / Double(total)
        let transitRate = Double(transit) / Double(total)
        let enoughReady = readyRate >= settings.requiredReadyRate
        let conflictsAcceptable = conflictRate <= settings.maxConflictRate
        if enoughReady && conflictsAcceptable {
            return result(.proceed, confidence: readyRate - conflictRate * 0.5, "quorum reached", "proceed")
        }
        if !enoughReady && transitRate > settings.maxTransitRate {
            return result(.wait, "too many agents still in transit (\(Self.percent(transitRate)))", "extend the arrival window")
        }
        if conflictRate > settings.maxConflictRate {
            return result(
                .resolveConflicts, "conflict rate \(Self.percent(conflictRate)) exceeds \(Self.percent(settings.maxConflictRate))",
                "run conflict resolution before proceeding")
        }
        return result(
            .retry, "insufficient ready agents (\(Self.percent(readyRate)))", "retry with adjusted impedance compensation")
    }

    static func percent(_ rate: Double) -> String {
        let tenths = Int((rate * 1000).rounded())
        return "\(tenths / 10).\(tenths % 10) %"
    }
}
