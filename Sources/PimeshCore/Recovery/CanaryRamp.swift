/// Seed 000 "LoadShedGuard": a restarted agent takes at most 5 tasks at a time for 30 s, then 25
/// for 60 s, then as many as routing gives it. It moves up a stage only when the hold is over and
/// the node is below 85 % utilisation and the agent's queue latency is below 100 ms; while the
/// node is degraded (MODERATE or worse) canaries hold where they are.
public struct CanaryRamp: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        /// Tasks out at once; nil is unlimited.
        public var limit: Int?
        public var hold: Duration

        public init(limit: Int?, hold: Duration) {
            self.limit = limit
            self.hold = hold
        }
    }

    public struct Settings: Sendable, Equatable {
        public var stages: [Stage]
        public var maxUtilisation: Double
        public var maxQueueLatencyMs: Double

        public init(
            stages: [Stage] = [Stage(limit: 5, hold: .seconds(30)), Stage(limit: 25, hold: .seconds(60)), Stage(limit: nil, hold: .zero)],
            maxUtilisation: Double = 0.85, maxQueueLatencyMs: Double = 100
        ) {
            self.stages = stages
            self.maxUtilisation = maxUtilisation
            self.maxQueueLatencyMs = maxQueueLatencyMs
        }
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    public private(set) var stage = 0
    public private(set) var stageStarted: Instant

    public init(startedAt: Instant, settings: Settings = Settings()) {
        self.sharedSettings = Shared(settings)
        self.stageStarted = startedAt
    }

    public var limit: Int? { settings.stages[stage].limit }
    public var isComplete: Bool { stage == settings.stages.count - 1 && limit == nil }

    /// Advances at most one stage; returns the new stage index when it moved.
    public mutating func evaluate(at now: Instant, utilisation: Double, queueLatencyMs: Double, mayAdvance: Bool) -> Int? {
        guard stage < settings.stages.count - 1, mayAdvance else { return nil }
        guard now - stageStarted >= settings.stages[stage].hold else { return nil }
        guard utilisation < settings.maxUtilisation, queueLatencyMs < settings.maxQueueLatencyMs else { return nil }
        stage += 1
        stageStarted = now
        return stage
    }
}
