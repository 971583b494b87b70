/// Seed 001 §11.1 key performance indicators, counted since the lead started. Feeding them is
/// a few additions; the cascade latencies keep the last 1,000 operations.
public struct CoordinationKPIs: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Seed: "within 50 ms for 90 % of messages".
        public var predictionTolerance: Duration
        public var cascadeSamples: Int

        public init(predictionTolerance: Duration = .milliseconds(50), cascadeSamples: Int = 1000) {
            self.predictionTolerance = predictionTolerance
            self.cascadeSamples = cascadeSamples
        }
    }

    public let settings: Settings
    public private(set) var operations = 0
    public private(set) var operationsAchievingQuorum = 0
    public private(set) var arrivals = 0
    public private(set) var arrivalsInWindow = 0
    public private(set) var predictions = 0
    public private(set) var predictionsWithinTolerance = 0
    public private(set) var responses = 0
    public private(set) var conflictResponses = 0
    private var cascadeMs: SampleRing

    public init(settings: Settings = Settings()) {
        self.settings = settings
        self.cascadeMs = SampleRing(capacity: settings.cascadeSamples)
    }

    /// One answer (a task result or a scatter-gather answer): did it come when and as predicted?
    public mutating func recordArrival(actualMs: Double, predictedMs: Double, inWindow: Bool, state: TrinaryState) {
        arrivals += 1
        if inWindow { arrivalsInWindow += 1 }
        predictions += 1
        if abs(actualMs - predictedMs) <= settings.predictionTolerance.milliseconds { predictionsWithinTolerance += 1 }
        responses += 1
        if state == .conflict { conflictResponses += 1 }
    }

    /// An agent that was sent a scatter-gather message and never answered in its window.
    public mutating func recordMissedArrival() {
        arrivals += 1
    }

    /// One scatter-gather operation from its first send to its decision.
    public mutating func recordOperation(achievedQuorum: Bool, durationMs: Double) {
        operations += 1
        if achievedQuorum { operationsAchievingQuorum += 1 }
        cascadeMs.add(durationMs)
    }

    public struct Indicator: Sendable, Equatable {
        public enum Bound: String, Sendable { case atLeast = ">=", atMost = "<=" }

        public var name: String
        /// nil until something was measured.
        public var value: Double?
        public var target: Double
        public var bound: Bound
        public var unit: String
        public var samples: Int

        public var met: Bool? {
            value.map { bound == .atLeast ? $0 >= target : $0 <= target }
        }
    }

    private static func ratio(_ part: Int, _ whole: Int) -> Double? {
        whole == 0 ? nil : Double(part) / Double(whole)
    }

    /// The seed's targets beside the values.
    public var indicators: [Indicator] {
        [
            Indicator(
                name: "coordination_success_rate", value: Self.ratio(operationsAchievingQuorum, operations), target: 0.99,
                bound: .atLeast, unit: "ratio", samples: operations),
            Indicator(
                name: "arrival_window_hit_rate", value: Self.ratio(arrivalsInWindow, arrivals), target: 0.95, bound: .atLeast,
                unit: "ratio", samples: arrivals),
            Indicator(
                name: "impedance_prediction_accuracy", value: Self.ratio(predictionsWithinTolerance, predictions), target: 0.90,
                bound: .atLeast, unit: "ratio", samples: predictions),
            Indicator(
                name: "conflict_rate", value: Self.ratio(conflictResponses, responses), target: 0.01, bound: .atMost,
                unit: "ratio", samples: responses),
            Indicator(
                name: "cascade_latency_p95", value: cascadeMs.percentile(95), target: 1000, bound: .atMost, unit: "ms",
                samples: cascadeMs.count),
        ]
    }
}
