/// One agent as the router sees it when a task arrives: what predicts its arrival, and whether
/// it may take work at all.
public struct RouteCandidate: Sendable, Equatable {
    public enum Availability: Sendable, Equatable {
        case available
        /// No fresh READY heartbeat: TRANSIT (silent) or CONFLICT (reported).
        case notReady
        /// Under conflict quarantine until an operator releases it (seed 001 §5.1).
        case quarantined
        /// Failure detection says it is not alive: suspected, hung, looping, exited or frozen.
        case unhealthy
        /// Holds as many tasks as its canary stage or half-open breaker allows, or its breaker is open.
        case limited
    }

    public var agentClass: AgentClass
    /// Median one-way latency from heartbeats.
    public var latencyMs: Double
    public var drift: Double
    /// Work already waiting at the agent: the larger of what it reports and what the lead has
    /// handed it but not seen finished.
    public var queueDepth: Int
    /// Observed ÷ estimated processing time over recent completions (1 before there are any).
    public var processingCalibration: Double
    public var availability: Availability

    public init(
        agentClass: AgentClass, latencyMs: Double, drift: Double, queueDepth: Int, processingCalibration: Double = 1,
        availability: Availability = .available
    ) {
        self.agentClass = agentClass
        self.latencyMs = latencyMs
        self.drift = drift
        self.queueDepth = queueDepth
        self.processingCalibration = processingCalibration
        self.availability = availability
    }

    /// DESIGN.md §3: observed latency + `estimate_processing(class, weight, queue)`, calibrated
    /// by what this agent's completions actually took.
    public func predictedArrivalMs(payloadWeight: Double) -> Double {
        latencyMs
            + agentClass.estimateProcessingMs(payloadWeight: payloadWeight, queueDepth: queueDepth) * processingCalibration
    }

    /// The arrival padded by the drift buffer (`Impedance.bufferMs`): what a deadline is checked against.
    public func leadTimeMs(payloadWeight: Double) -> Double {
        predictedArrivalMs(payloadWeight: payloadWeight) * (1 + drift)
    }
}
