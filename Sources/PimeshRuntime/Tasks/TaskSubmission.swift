import PimeshServer

/// A validated `POST /v1/tasks` body.
struct TaskSubmission: Equatable {
    var capability: String
    var payload: String
    /// Seed 001 `payload_weight`: 0 is a unit of the class's base work, each 1 adds half of it.
    var weight: Double
    var deadlineMs: Int?
    /// Seed 001 `ttl_ms`: how long it may wait in the queue; nil takes `tasks.default_ttl_ms`.
    var ttlMs: Int?
    var idempotencyKey: String?
    /// Seed 001: 0 background, 1 low, 2 normal (default), 3 critical.
    var priority = 2

    static let maxPayloadBytes = 64 * 1024
    static let maxWeight = 100.0
    static let maxDeadlineMs = 24 * 3_600_000

    static func validate(_ body: JSONValue) throws(APIError) -> TaskSubmission {
        let reader = try BodyReader(body, allowed: ["capability", "payload", "weight", "deadline_ms", "idempotency_key", "priority", "ttl_ms"])
        let capability = try reader.identifier("capability", required: true)!
        guard RegistrationRequest.isIdentifier(capability, allowUppercase: false) else {
            throw .badRequest("\"capability\" must be lower case: a–z, 0–9, '.', '_' or '-'", field: "capability")
        }
        var submission = TaskSubmission(
            capability: capability, payload: try reader.string("payload", maxBytes: maxPayloadBytes) ?? "",
            weight: try reader.number("weight", in: 0...maxWeight) ?? 0,
            deadlineMs: try reader.integer("deadline_ms", in: 1...maxDeadlineMs),
            idempotencyKey: try reader.identifier("idempotency_key", maxBytes: 128))
        if let priority = try reader.integer("priority", in: 0...3) { submission.priority = priority }
        submission.ttlMs = try reader.integer("ttl_ms", in: 1...maxDeadlineMs)
        return submission
    }
}
