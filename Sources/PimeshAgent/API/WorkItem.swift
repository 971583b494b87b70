/// Something the lead hands an agent through its long poll: a task to run, or a scatter-gather
/// question (`ask`) or notice (`broadcast`) to answer with a trinary state.
public struct WorkItem: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case task, ask, broadcast
    }

    public var kind: Kind
    /// Task id, or operation id for ask/broadcast.
    public var id: String
    public var capability: String?
    /// Opaque text (often JSON) as the submitter gave it.
    public var payload: String
    public var weight: Double
    /// Tasks: which attempt this is (1 for the first).
    public var attempt: Int?
    /// ask/broadcast: when the lead wants the answer, in ms from when it was sent.
    public var replyWithinMs: Int?

    public init(
        kind: Kind, id: String, capability: String?, payload: String, weight: Double, attempt: Int? = nil, replyWithinMs: Int? = nil
    ) {
        self.kind = kind
        self.id = id
        self.capability = capability
        self.payload = payload
        self.weight = weight
        self.attempt = attempt
        self.replyWithinMs = replyWithinMs
    }
}

/// `GET /v1/agents/{id}/work`: what was waiting, possibly nothing when the long poll timed out.
public struct WorkBatch: Codable, Sendable {
    public var items: [WorkItem]

    public init(items: [WorkItem]) {
        self.items = items
    }
}
