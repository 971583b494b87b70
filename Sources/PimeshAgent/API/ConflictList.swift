/// `GET /v1/conflicts` and `pimesh conflicts --json`: the newest log entries and who is quarantined.
public struct ConflictList: Codable, Sendable {
    public var conflicts: [Entry]
    public var total: Int
    public var quarantined: [QuarantinedAgent]
    /// Pass as `cursor` for the next, older page; absent on the last one.
    public var nextCursor: String?

    public struct Entry: Codable, Sendable {
        public var seq: Int64
        public var atMs: Int64
        public var agentID: String
        public var agentName: String?
        public var source: String
        public var type: String
        public var priority: Int
        public var strategy: String
        public var expected: String?
        public var received: String?
        public var contextHash: String?
        public var quarantined: Bool
        /// Seed 001 §5.1: resolve within 1 h (priority 1), 10 min (2), 1 min (3), at once (4); absent for 0.
        public var resolveByMs: Int64?
        /// `none`, `sector_coordinator` (priority 3) or `orchestrator` (4).
        public var escalation: String?
        public var resolvedAtMs: Int64?
        public var resolvedBy: String?
        public var resolution: String?
        /// Unresolved past its resolution time.
        public var overdue: Bool?

        enum CodingKeys: String, CodingKey {
            case seq, atMs, agentName, source, type, priority, strategy, expected, received, contextHash, quarantined
            case resolveByMs, escalation, resolvedAtMs, resolvedBy, resolution, overdue
            case agentID = "agentId"
        }

        public init(
            seq: Int64, atMs: Int64, agentID: String, agentName: String?, source: String, type: String, priority: Int,
            strategy: String, expected: String?, received: String?, contextHash: String?, quarantined: Bool
        ) {
            self.seq = seq
            self.atMs = atMs
            self.agentID = agentID
            self.agentName = agentName
            self.source = source
            self.type = type
            self.priority = priority
            self.strategy = strategy
            self.expected = expected
            self.received = received
            self.contextHash = contextHash
            self.quarantined = quarantined
        }
    }

    public struct QuarantinedAgent: Codable, Sendable {
        public var agentID: String
        public var agentName: String?
        public var sinceMs: Int64
        public var reason: String

        enum CodingKeys: String, CodingKey {
            case agentName, sinceMs, reason
            case agentID = "agentId"
        }

        public init(agentID: String, agentName: String?, sinceMs: Int64, reason: String) {
            self.agentID = agentID
            self.agentName = agentName
            self.sinceMs = sinceMs
            self.reason = reason
        }
    }

    public init(conflicts: [Entry], total: Int, quarantined: [QuarantinedAgent]) {
        self.conflicts = conflicts
        self.total = total
        self.quarantined = quarantined
    }
}
