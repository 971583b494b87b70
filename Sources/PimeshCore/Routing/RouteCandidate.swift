/// One agent as the router sees it when a task arrives: what predicts its arrival, how often
/// its answers succeed, and whether it may take work at all.
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

        /// The one place that decides whether an agent may be handed a task, in this order:
        /// an operator's quarantine, failure detection, a fresh READY, then its task limit.
        public init(quarantined: Bool, condition: AgentCondition, state: TrinaryState, outstanding: Int, taskLimit: Int?) {
            if quarantined {
                self = .quarantined
            } else if condition != .alive && condition != .unknown {
                self = .unhealthy
            } else if state != .ready {
                self = .notReady
            } else if let taskLimit, outstanding >= taskLimit {
                self = .limited
            } else {
                self = .available
            }
        }
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
    /// Share of the last hour's tasks that succeeded (1 before there are any).
    public var reliability: Double
    /// Seed 001 §4.2: impedance score above 800.
    public var isDegraded: Bool
    /// Seed 001 IMPEDANCE_SPIKE: score above twice its own history (`ImpedanceTracker.isSpiking`).
    public var isSpiking: Bool

    public init(
        agentClass: AgentClass, latencyMs: Double, drift: Double, queueDepth: Int, processingCalibration: Double = 1,
        availability: Availability = .available, reliability: Double = 1, isDegraded: Bool = false, isSpiking: Bool = false
    ) {
        self.agentClass = agentClass
        self.latencyMs = latencyMs
        self.drift = drift
        self.queueDepth = queueDepth
        self.processingCalibration = processingCalibration
        self.availability = availability
        self.reliability = reliability
        self.isDegraded = isDegraded
        self.isSpiking = isSpiking
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

    /// Seed 001 routes "to the agent with the lowest impedance"; pimesh makes that a time: the
    /// expected wait for a *successful* answer. A failed answer is retried, so with success
    /// rate r an answer takes 1/r attempts on average, each costing the drift-padded arrival.
    public func costMs(payloadWeight: Double) -> Double {
        leadTimeMs(payloadWeight: payloadWeight) / max(reliability, Self.reliabilityFloor)
    }

    /// An agent that fails nearly everything costs 20 attempts, not infinity: it stays
    /// comparable, and a breaker (not the router) is what takes it out of service.
    public static let reliabilityFloor = 0.05

    /// Degraded and spiking agents are routed around while another agent can meet the deadline.
    public var isAvoided: Bool {
        isDegraded || isSpiking
    }
}
