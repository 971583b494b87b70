import PimeshCore

/// A task as the database keeps it. Payload and result are JSON text, opaque to the lead.
public struct TaskRow: Sendable, Equatable, ExpiringTask {
    public var id: String
    public var idempotencyKey: String?
    public var capability: String
    public var payload: String
    public var weight: Double
    public var deadlineMs: Int?
    public var state: TaskState
    public var agentID: AgentID?
    public var attempts: Int
    public var submittedAtMs: Int64
    public var skipReason: String?
    public var predictedMs: Double?
    /// The prediction padded by the agent's drift: the arrival window's end, before tolerance.
    public var leadTimeMs: Double?
    public var finishedAtMs: Int64?
    /// Handed over to result, as the lead measured it.
    public var actualMs: Double?
    public var result: String?
    public var error: String?
    /// Seed 001: 0 background, 1 low, 2 normal, 3 critical.
    public var priority: Int = 2
    /// Seed 001 `ttl_ms`: dropped if still queued this long after submission; nil for rows
    /// stored before the field existed, which never expire.
    public var ttlMs: Int?

    public init(
        id: String, idempotencyKey: String?, capability: String, payload: String, weight: Double, deadlineMs: Int?,
        state: TaskState, agentID: AgentID?, attempts: Int, submittedAtMs: Int64, skipReason: String? = nil,
        predictedMs: Double? = nil, leadTimeMs: Double? = nil, finishedAtMs: Int64? = nil, actualMs: Double? = nil, result: String? = nil,
        error: String? = nil
    ) {
        self.id = id
        self.idempotencyKey = idempotencyKey
        self.capability = capability
        self.payload = payload
        self.weight = weight
        self.deadlineMs = deadlineMs
        self.state = state
        self.agentID = agentID
        self.attempts = attempts
        self.submittedAtMs = submittedAtMs
        self.skipReason = skipReason
        self.predictedMs = predictedMs
        self.leadTimeMs = leadTimeMs
        self.finishedAtMs = finishedAtMs
        self.actualMs = actualMs
        self.result = result
        self.error = error
    }

    /// What this row counts against the stored-task budget (`TaskRetention`).
    public var storedBytes: Int {
        TaskRetention.storedBytes(textByteCounts: [
            payload.utf8.count, result?.utf8.count ?? 0, error?.utf8.count ?? 0, skipReason?.utf8.count ?? 0,
            idempotencyKey?.utf8.count ?? 0, capability.utf8.count,
        ])
    }
}
