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
        /// Completions needed before observed processing times recalibrate the seed's estimate.
        public var calibrationMinimumSamples: Int
        /// The calibration factor stays inside these bounds, so one freak task cannot make an
        /// agent look four times faster or slower than its class.
        public var calibrationBounds: ClosedRange<Double>
        /// Seed 001 IMPEDANCE_SPIKE compares the score with its own history: the history is an
        /// average of one sample per `scoreSampleEvery`, each weighing 1/`scoreHistorySamples`
        /// (5 minutes at 1 s), judged only after `spikeMinimumSamples`.
        public var scoreSampleEvery: Duration
        public var scoreHistorySamples: Double
        public var spikeMinimumSamples: Int
        /// Seed: a spike is a score above 2× the historical average.
        public var spikeFactor: Double
        /// A score below this is never a spike: doubling 40 to 80 is a few milliseconds of
        /// jitter on a fast agent, not one "suddenly much slower than baseline".
        public var spikeFloorScore: Int

        public init(
            latencySamples: Int = 100,
            driftFloorMs: Double = 10,
            recencyWindow: Duration = .seconds(10),
            referencePayloadWeight: Double = 0,
            reliability: ReliabilityWindow.Settings = .init(),
            score: ImpedanceScore.Settings = .init(),
            calibrationMinimumSamples: Int = 5,
            calibrationBounds: ClosedRange<Double> = 0.25...4,
            scoreSampleEvery: Duration = .seconds(1),
            scoreHistorySamples: Double = 300,
            spikeMinimumSamples: Int = 30,
            spikeFactor: Double = 2,
            spikeFloorScore: Int = 100
        ) {
            self.latencySamples = latencySamples
            self.driftFloorMs = driftFloorMs
            self.recencyWindow = recencyWindow
            self.referencePayloadWeight = referencePayloadWeight
            self.reliability = reliability
            self.score = score
            self.calibrationMinimumSamples = calibrationMinimumSamples
            self.calibrationBounds = calibrationBounds
            self.scoreSampleEvery = scoreSampleEvery
            self.scoreHistorySamples = scoreHistorySamples
            self.spikeMinimumSamples = spikeMinimumSamples
            self.spikeFactor = spikeFactor
            self.spikeFloorScore = spikeFloorScore
        }
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    public let agentClass: AgentClass
    public private(set) var latency: SampleRing
    public private(set) var queueDepth = 0
    public private(set) var lastHeartbeat: Instant?
    private var reliabilityWindow: ReliabilityWindow
    /// Seed 001 §4.1 `processing_samples`: observed processing of successful tasks.
    public private(set) var processing: SampleRing
    private var calibrationRatios: SampleRing
    /// Actual minus predicted submit-to-result time of recent completions.
    public private(set) var predictionErrors: SampleRing
    /// Average of the score samples so far (see `Settings.scoreHistorySamples`).
    public private(set) var scoreHistory: Double?
    public private(set) var scoreSamples = 0
    private var lastScoreSample: Instant?

    public init(agentClass: AgentClass, settings: Settings = Settings()) {
        self.agentClass = agentClass
        self.sharedSettings = Shared(settings)
        self.latency = SampleRing(capacity: settings.latencySamples)
        self.reliabilityWindow = ReliabilityWindow(settings: settings.reliability)
        self.processing = SampleRing(capacity: settings.latencySamples, lazily: true)
        self.calibrationRatios = SampleRing(capacity: settings.latencySamples, lazily: true)
        self.predictionErrors = SampleRing(capacity: settings.latencySamples, lazily: true)
    }

    public mutating func recordHeartbeat(at now: Instant, oneWayLatencyMs: Double, queueDepth: Int) {
        latency.add(max(0, oneWayLatencyMs))
        self.queueDepth = AgentClass.admittedQueueDepth(queueDepth)
        lastHeartbeat = now
    }

    public mutating func recordOutcome(succeeded: Bool, at now: Instant) {
        reliabilityWindow.record(succeeded: succeeded, at: now)
    }

    /// A task finished: `totalMs` from handing it over to its result, against the prediction
    /// made when it was routed. Processing is what remains after the agent's typical latency.
    public mutating func recordCompletion(
        at now: Instant, totalMs: Double, predictedMs: Double, estimatedProcessingMs: Double, succeeded: Bool
    ) {
        recordOutcome(succeeded: succeeded, at: now)
        guard succeeded else { return }
        // Hand-over to result is a round trip plus processing; heartbeats measure one way
        // (agent and lead read the same clock), which is the seed's `latency / 2`.
        let processingMs = max(0, totalMs - 2 * (latency.percentile(50) ?? 0))
        processing.add(processingMs)
        if estimatedProcessingMs > 0 { calibrationRatios.add(processingMs / estimatedProcessingMs) }
        predictionErrors.add(totalMs - predictedMs)
    }

    /// Median observed ÷ estimated processing, once there are enough completions; else 1.
    public var processingCalibration: Double {
        guard calibrationRatios.count >= settings.calibrationMinimumSamples, let median = calibrationRatios.percentile(50) else {
            return 1
        }
        return min(max(median, settings.calibrationBounds.lowerBound), settings.calibrationBounds.upperBound)
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

    /// Called by the health tick: adds at most one score sample per `scoreSampleEvery`.
    public mutating func sampleScore(at now: Instant) {
        if let last = lastScoreSample, now - last < settings.scoreSampleEvery { return }
        lastScoreSample = now
        // The score alone: the full impedance adds the percentiles only status shows.
        let score = Double(essentials(at: now).score)
        scoreSamples += 1
        let weight = 1 / min(Double(scoreSamples), max(1, settings.scoreHistorySamples))
        scoreHistory = scoreHistory.map { $0 + (score - $0) * weight } ?? score
    }

    /// Seed 001 IMPEDANCE_SPIKE: "impedance score > 2x historical average".
    public func isSpiking(score: Int) -> Bool {
        guard scoreSamples >= settings.spikeMinimumSamples, let history = scoreHistory, score >= settings.spikeFloorScore else {
            return false
        }
        return Double(score) > history * settings.spikeFactor
    }

    /// The figures both the full impedance and the router's view are made of, computed once.
    private struct Essentials {
        var latencyMs: Double
        var calibration: Double
        var processingMs: Double
        var arrival: Double
        var reliability: Double
        var drift: Double
        var score: Int
    }

    private func essentials(at now: Instant) -> Essentials {
        let latencyMs = latency.percentile(50) ?? 0
        let calibration = processingCalibration
        let processingMs =
            agentClass.estimateProcessingMs(payloadWeight: settings.referencePayloadWeight, queueDepth: queueDepth) * calibration
        let arrival = latencyMs + processingMs
        let reliability = reliability(at: now)
        let drift = drift
        let score = ImpedanceScore.score(predictedArrivalMs: arrival, reliability: reliability, drift: drift, settings: settings.score)
        return Essentials(
            latencyMs: latencyMs, calibration: calibration, processingMs: processingMs, arrival: arrival, reliability: reliability,
            drift: drift, score: score)
    }

    /// What the router needs, without the percentiles only status shows. `queueDepth` is what
    /// the lead counts waiting at the agent, which may be ahead of its last heartbeat.
    public func routeCandidate(at now: Instant, availability: RouteCandidate.Availability, queueDepth: Int) -> RouteCandidate {
        let e = essentials(at: now)
        return RouteCandidate(
            agentClass: agentClass, latencyMs: e.latencyMs, drift: e.drift, queueDepth: queueDepth, processingCalibration: e.calibration,
            availability: availability, reliability: e.reliability, isDegraded: e.score > settings.score.degradedAbove,
            isSpiking: isSpiking(score: e.score))
    }

    public func impedance(at now: Instant) -> Impedance {
        let e = essentials(at: now)
        let (latencyMs, processingMs, arrival, reliability, drift, score) = (e.latencyMs, e.processingMs, e.arrival, e.reliability, e.drift, e.score)
        let processingCalibration = e.calibration
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
            isUnstable: drift > settings.score.unstableAboveDrift,
            isSpiking: isSpiking(score: score),
            processingCalibration: processingCalibration,
            observedProcessingMs: processing.percentile(50),
            completions: processing.count,
            medianPredictionErrorMs: predictionErrors.percentile(50)
        )
    }
}
