import PimeshCore

/// One agent as the API shows it (`GET /v1/agents`); keys are snake_case in JSON.
public struct AgentView: Codable, Sendable, Equatable {
    public var id: AgentID
    public var name: String
    public var agentClass: AgentClass
    public var capabilities: [String]
    /// READY / TRANSIT / CONFLICT as the lead sees it: the reported state while heartbeats are
    /// fresh, TRANSIT (outcome unknown) when none has arrived within `stale_after_ms`.
    public var state: String
    public var reportedState: String?
    public var iteration: UInt64?
    public var lastHeartbeatMsAgo: Int64?
    public var progress: UInt64
    public var impedance: ImpedanceView
    /// Held out of routing after a critical conflict until an operator releases it.
    public var quarantined: Bool = false
    /// Tasks handed to this agent and not yet finished.
    public var outstandingTasks: Int = 0
    /// What failure detection believes, the breaker and the canary stage.
    public var health: AgentHealthView?
    /// Set for agents the lead starts or heals from a manifest.
    public var supervision: SupervisionView?

    enum CodingKeys: String, CodingKey {
        case id, name, capabilities, state, reportedState, iteration, lastHeartbeatMsAgo, progress, impedance, quarantined
        case outstandingTasks, health, supervision
        case agentClass = "class"
    }

    public init(
        id: AgentID, name: String, agentClass: AgentClass, capabilities: [String], state: String, reportedState: String?,
        iteration: UInt64?, lastHeartbeatMsAgo: Int64?, progress: UInt64, impedance: ImpedanceView
    ) {
        self.id = id
        self.name = name
        self.agentClass = agentClass
        self.capabilities = capabilities
        self.state = state
        self.reportedState = reportedState
        self.iteration = iteration
        self.lastHeartbeatMsAgo = lastHeartbeatMsAgo
        self.progress = progress
        self.impedance = impedance
    }
}

public struct ImpedanceView: Codable, Sendable, Equatable {
    public var latencyMs: Double
    public var queueDepth: Int
    public var processingMs: Double
    public var predictedArrivalMs: Double
    public var reliability: Double
    public var outcomes: Int
    public var drift: Double
    public var confidence: Double
    public var score: Int
    public var degraded: Bool
    public var unstable: Bool
    public var processingCalibration: Double
    public var observedProcessingMs: Double?
    public var completions: Int
    public var medianPredictionErrorMs: Double?

    public init(_ impedance: Impedance) {
        latencyMs = Self.round(impedance.latencyMs)
        queueDepth = impedance.queueDepth
        processingMs = Self.round(impedance.processingMs)
        predictedArrivalMs = Self.round(impedance.predictedArrivalMs)
        reliability = Self.round(impedance.reliability)
        outcomes = impedance.outcomes
        drift = Self.round(impedance.drift)
        confidence = Self.round(impedance.confidence)
        score = impedance.score
        degraded = impedance.isDegraded
        unstable = impedance.isUnstable
        processingCalibration = Self.round(impedance.processingCalibration)
        observedProcessingMs = impedance.observedProcessingMs.map(Self.round)
        completions = impedance.completions
        medianPredictionErrorMs = impedance.medianPredictionErrorMs.map(Self.round)
    }

    /// Three decimals: enough for a person and for scripts, and stable in diffs.
    public static func round(_ value: Double) -> Double {
        (value * 1000).rounded() / 1000
    }
}

public struct AgentList: Codable, Sendable {
    public var agents: [AgentView]
    /// Pass as `cursor` for the next page (agents are listed by name); absent on the last one.
    public var nextCursor: String?

    public init(agents: [AgentView], nextCursor: String? = nil) {
        self.agents = agents
        self.nextCursor = nextCursor
    }
}
