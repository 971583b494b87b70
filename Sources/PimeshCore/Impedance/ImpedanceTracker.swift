/// Per-agent impedance measurements (seed 001 §2.3, §4.1): latency ring, queue depth,
/// reliability window and heartbeat recency. Feeding it never allocates.
public struct ImpedanceTracker: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Seed 001 §4.1: `RingBuffer(size=100)`.
        public var latencySamples: Int
        /// Drift is latency σ over latency mean; a mean below this floor counts as the floor, so
        /// that sub-millisecond loopback jitter (0.2 ± 0.1 ms) is not called unstable.
        public var driftFloorMs: Double
        /// Seed 001 §3.1 `calculate_confidence`: recent means a heartbeat under 10 s old.
        public var recencyWindow: Duration
        /// The payload weight the score is computed for: a unit of the class's base work.
        public var referencePayloadWeight: Double
        public var reliability: ReliabilityWindow.Settings
        public var score: ImpedanceScore.Settings

        public init(
            latencySamples: Int = 100,
            driftFloorMs: Double = 10,
            recencyWindow: Duration = .seconds(10),
            referencePayloadWeight: Double = 0,
            reliability: ReliabilityWindow.Settings = .init(),
            score: ImpedanceScore.Settings = .init()
        ) {
            self.latencySamples = latencySamples
            self.driftFloorMs = driftFloorMs
            self.recencyWindow = recencyWindow
            self.referencePayloadWeight = referencePayloadWeight
            self.reliability = reliability
            self.score = score
        }
    }

    public let settings: Settings
    public let agentClass: AgentClass
    public private(set) var latency: SampleRing
    public private(set) var queueDepth = 0
    public private(set) var lastHeartbeat: Instant?
    private var reliabilityWindow: ReliabilityWindow

    public init(agentClass: AgentClass, settings: Settings = Settings()) {
        self.agentClass = agentClass
        self.settings = settings
        self.latency = SampleRing(capacity: settings.latencySamples)
        self.reliabilityWindow = ReliabilityWindow(settings: settings.reliability)
    }

    public mutating func recordHeartbeat(at now: Instant, oneWayLatencyMs: Double, queueDepth: Int) {
        latency.add(max(0, oneWayLatencyMs))
        self.queueDepth = max(0, queueDepth)
        lastHeartbeat = now
    }

    public mutating func recordOutcome(succeeded: Bool, at now: Instant) {
        reliabilityWindow.record(succeeded: succeeded, at: now)
    }

    /// σ / max(μ, floor) of the latency ring: 0.5 means latency typically moves by half its mean.
    public var drift: Double {
        guard let mean = latency.mean, let sigma = latency.standardDeviation else { return 0 }
        return sigma / max(mean, settings.driftFloorMs)
    }

    public func reliability(at now: Instant) -> Double {
        reliabilityWindow.rate(at: now) ?? 1
    }

    /// Seed 001 §3.1: `0.5·reliability − 0.3·drift + 0.2 if the last heartbeat is recent`, clamped 0…1.
    public func confidence(at now: Instant) -> Double {
        let isRecent = lastHeartbeat.map { now - $0 < settings.recencyWindow } ?? false
        let value = reliability(at: now) * 0.5 - drift * 0.3 + (isRecent ? 0.2 : 0)
        return min(1, max(0, value))
    }

    public func impedance(at now: Instant) -> Impedance {
        let latencyMs = latency.percentile(50) ?? 0
        let processingMs = agentClass.estimateProcessingMs(
            payloadWeight: settings.referencePayloadWeight, queueDepth: queueDepth)
        let arrival = latencyMs + processingMs
        let reliability = reliability(at: now)
        let drift = drift
        let score = ImpedanceScore.score(
            predictedArrivalMs: arrival, reliability: reliability, drift: drift, settings: settings.score)
        let (s, f) = reliabilityWindow.outcomes(at: now)
        return Impedance(
            agentClass: agentClass,
            latencyMs: latencyMs,
            queueDepth: queueDepth,
            processingMs: processingMs,
            predictedArrivalMs: arrival,
            reliability: reliability,
            outcomes: s + f,
            drift: drift,
            confidence: confidence(at: now),
            score: score,
            isDegraded: score > settings.score.degradedAbove,
            isUnstable: drift > settings.score.unstableAboveDrift
        )
    }
}
