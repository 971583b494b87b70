import PimeshCore

/// A registered agent as the database keeps it.
public struct AgentRow: Sendable, Equatable {
    public var id: AgentID
    public var name: String
    public var agentClass: AgentClass
    public var capabilities: [String]
    public var secret: [UInt8]
    public var registeredAtMs: Int64
    /// Registered through the API (with the join token), not made for a manifest: such an
    /// agent's name never becomes a supervised manifest's. Nil for rows from before schema 10.
    public var selfRegistered: Bool?

    public init(
        id: AgentID, name: String, agentClass: AgentClass, capabilities: [String], secret: [UInt8], registeredAtMs: Int64, selfRegistered: Bool? = nil
    ) {
        self.id = id
        self.name = name
        self.agentClass = agentClass
        self.capabilities = capabilities
        self.secret = secret
        self.registeredAtMs = registeredAtMs
        self.selfRegistered = selfRegistered
    }
}

/// The periodic record of one agent's live state.
public struct AgentCheckpoint: Sendable, Equatable {
    public var agentID: AgentID
    public var atMs: Int64
    public var lastIteration: UInt64
    public var state: TrinaryState
    public var latencyMs: Double
    public var queueDepth: Int
    public var score: Int
    public var reliability: Double
    public var drift: Double

    public init(
        agentID: AgentID, atMs: Int64, lastIteration: UInt64, state: TrinaryState, latencyMs: Double,
        queueDepth: Int, score: Int, reliability: Double, drift: Double
    ) {
        self.agentID = agentID
        self.atMs = atMs
        self.lastIteration = lastIteration
        self.state = state
        self.latencyMs = latencyMs
        self.queueDepth = queueDepth
        self.score = score
        self.reliability = reliability
        self.drift = drift
    }
}
