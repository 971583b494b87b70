import PimeshCore

/// What an agent posts when a task is done (`POST /v1/tasks/{id}/result`).
public struct ResultReport: Codable, Sendable {
    public enum Outcome: String, Codable, Sendable {
        case succeeded, failed, conflict
    }

    public var agentID: String
    public var outcome: Outcome
    public var result: String?
    public var error: String?
    public var conflict: ConflictReport?

    enum CodingKeys: String, CodingKey {
        case agentID = "agentId"
        case outcome, result, error, conflict
    }

    public init(agentID: AgentID, outcome: Outcome, result: String? = nil, error: String? = nil, conflict: ConflictReport? = nil) {
        self.agentID = agentID.description
        self.outcome = outcome
        self.result = result
        self.error = error
        self.conflict = conflict
    }
}

/// What an agent posts to answer an ask or broadcast (`POST /v1/ops/{id}/answers`).
public struct AnswerReport: Codable, Sendable {
    public var agentID: String
    /// 1 READY, 0 TRANSIT, −1 CONFLICT.
    public var state: Int
    public var answer: String?
    public var conflict: ConflictReport?

    enum CodingKeys: String, CodingKey {
        case agentID = "agentId"
        case state, answer, conflict
    }

    public init(agentID: AgentID, state: TrinaryState, answer: String? = nil, conflict: ConflictReport? = nil) {
        self.agentID = agentID.description
        self.state = Int(state.rawValue)
        self.answer = answer
        self.conflict = conflict
    }
}

/// Seed 001 §5.1 `ConflictDetail` on the wire.
public struct ConflictReport: Codable, Sendable {
    public var type: String
    public var expected: String?
    public var received: String?
    public var contextHash: String?
    public var divergenceDepth: Int?
    public var affectedAgents: Int?

    public init(
        type: ConflictType, expected: String? = nil, received: String? = nil, contextHash: String? = nil, divergenceDepth: Int? = nil,
        affectedAgents: Int? = nil
    ) {
        self.type = type.rawValue
        self.expected = expected
        self.received = received
        self.contextHash = contextHash
        self.divergenceDepth = divergenceDepth
        self.affectedAgents = affectedAgents
    }
}
