/// Seed 001 §5.1 conflict types, most urgent first.
public enum ConflictType: String, CaseIterable, Sendable, Codable {
    case temporalParadox = "TEMPORAL_PARADOX"
    case hashMismatch = "HASH_MISMATCH"
    case contextDivergence = "CONTEXT_DIVERGENCE"
    case dataContradiction = "DATA_CONTRADICTION"
    case other = "OTHER"
    case capabilityMismatch = "CAPABILITY_MISMATCH"
}

/// What an agent reports with a CONFLICT (−1) answer: the seed's `ConflictDetail`.
public struct ConflictDetail: Sendable, Equatable {
    public var type: ConflictType
    public var expected: String?
    public var received: String?
    public var contextHash: String?
    /// CONTEXT_DIVERGENCE: how many steps the two world models differ by.
    public var divergenceDepth: Int
    /// DATA_CONTRADICTION: how many agents hold the contradicted fact.
    public var affectedAgents: Int

    public init(
        type: ConflictType, expected: String? = nil, received: String? = nil, contextHash: String? = nil,
        divergenceDepth: Int = 0, affectedAgents: Int = 0
    ) {
        self.type = type
        self.expected = expected
        self.received = received
        self.contextHash = contextHash
        self.divergenceDepth = divergenceDepth
        self.affectedAgents = affectedAgents
    }
}
