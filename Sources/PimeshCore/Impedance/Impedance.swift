/// One agent's impedance at an instant: what the router, status and metrics read.
public struct Impedance: Sendable, Equatable {
    public var agentClass: AgentClass
    /// Median one-way latency over the latency ring; 0 before the first sample.
    public var latencyMs: Double
    public var queueDepth: Int
    /// `estimate_processing` for the reference payload at the current queue depth.
    public var processingMs: Double
    /// latency + processing: when work sent now would be done.
    public var predictedArrivalMs: Double
    /// Success rate over the last hour; 1 while there is no outcome to judge by.
    public var reliability: Double
    /// Number of outcomes the reliability is based on.
    public var outcomes: Int
    public var drift: Double
    public var confidence: Double
    public var score: Int
    public var isDegraded: Bool
    public var isUnstable: Bool
    /// Seed 001 IMPEDANCE_SPIKE: the score is above twice its own history; routed around.
    public var isSpiking: Bool = false
    /// Observed ÷ estimated processing (1 until enough tasks completed).
    public var processingCalibration: Double = 1
    /// Median processing of recent successful tasks; nil before the first.
    public var observedProcessingMs: Double?
    /// Successful completions behind the two figures above (at most the ring's size).
    public var completions: Int = 0
    /// Median of actual − predicted submit-to-result time; positive means slower than predicted.
    public var medianPredictionErrorMs: Double?

    /// Seed 001 §3.1 `calculate_buffer(drift)`: the seed leaves it open; pimesh pads the
    /// prediction by the drift fraction of itself, so a steady agent needs no margin.
    public var bufferMs: Double {
        predictedArrivalMs * drift
    }

    /// How long before a target arrival work must be sent to this agent (network + processing + buffer).
    public var leadTimeMs: Double {
        predictedArrivalMs + bufferMs
    }

    /// Lead time for a payload of another weight than the reference one, with the same
    /// calibration the router applies.
    public func leadTimeMs(payloadWeight: Double) -> Double {
        routeCandidate(availability: .available).leadTimeMs(payloadWeight: payloadWeight)
    }

    /// This agent as the router sees it: one formula for status, scatter-gather and tasks.
    public func routeCandidate(availability: RouteCandidate.Availability, queueDepth: Int? = nil) -> RouteCandidate {
        RouteCandidate(
            agentClass: agentClass, latencyMs: latencyMs, drift: drift, queueDepth: queueDepth ?? self.queueDepth,
            processingCalibration: processingCalibration, availability: availability, reliability: reliability,
            isDegraded: isDegraded, isSpiking: isSpiking)
    }
}
