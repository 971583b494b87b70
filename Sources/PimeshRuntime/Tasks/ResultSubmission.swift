import PimeshAgent
import PimeshCore
import PimeshServer

/// A validated `POST /v1/tasks/{id}/result` body.
struct ResultSubmission {
    var agentID: AgentID
    var outcome: ResultReport.Outcome
    var result: String?
    var error: String?
    var conflict: ConflictDetail?

    static let maxResultBytes = 64 * 1024

    static func validate(_ body: JSONValue) throws(APIError) -> ResultSubmission {
        let reader = try BodyReader(body, allowed: ["agent_id", "outcome", "result", "error", "conflict"])
        let agentID = try agentIdentifier(reader)
        let outcomeText = try reader.string("outcome", required: true, maxBytes: 16)!
        guard let outcome = ResultReport.Outcome(rawValue: outcomeText) else {
            throw .badRequest("\"outcome\" \"\(outcomeText)\" is not one of succeeded, failed, conflict", field: "outcome")
        }
        let conflict = try conflictDetail(reader)
        if outcome == .conflict && conflict == nil {
            throw .badRequest("\"conflict\" is required when the outcome is conflict", field: "conflict")
        }
        if outcome != .conflict && conflict != nil {
            throw .badRequest("\"conflict\" is only allowed when the outcome is conflict", field: "conflict")
        }
        return ResultSubmission(
            agentID: agentID, outcome: outcome, result: try reader.string("result", maxBytes: maxResultBytes),
            error: try reader.string("error", maxBytes: 4096), conflict: conflict)
    }

    static func agentIdentifier(_ reader: BodyReader) throws(APIError) -> AgentID {
        let text = try reader.string("agent_id", required: true, maxBytes: 64)!
        guard let id = AgentID(text) else {
            throw .badRequest("\"agent_id\" \"\(text)\" is not an agent id (a UUID)", field: "agent_id")
        }
        return id
    }

    static func conflictDetail(_ reader: BodyReader) throws(APIError) -> ConflictDetail? {
        guard
            let conflict = try reader.object(
                "conflict", allowed: ["type", "expected", "received", "context_hash", "divergence_depth", "affected_agents"])
        else { return nil }
        let typeText = try conflict.string("type", required: true, maxBytes: 64)!
        guard let type = ConflictType(rawValue: typeText) else {
            let known = ConflictType.allCases.map(\.rawValue).joined(separator: ", ")
            throw .badRequest("\"conflict.type\" \"\(typeText)\" is not one of \(known)", field: "conflict.type")
        }
        return ConflictDetail(
            type: type, expected: try conflict.string("expected", maxBytes: 4096),
            received: try conflict.string("received", maxBytes: 4096), contextHash: try conflict.string("context_hash", maxBytes: 256),
            divergenceDepth: try conflict.integer("divergence_depth", in: 0...1_000_000) ?? 0,
            affectedAgents: try conflict.integer("affected_agents", in: 0...1_000_000_000) ?? 0)
    }
}

/// A validated `POST /v1/ops/{id}/answers` body.
struct AnswerSubmission {
    var agentID: AgentID
    var state: TrinaryState
    var answer: String?
    var conflict: ConflictDetail?

    static func validate(_ body: JSONValue) throws(APIError) -> AnswerSubmission {
        let reader = try BodyReader(body, allowed: ["agent_id", "state", "answer", "conflict"])
        let agentID = try ResultSubmission.agentIdentifier(reader)
        guard let raw = try reader.integer("state", in: -1...1) else {
            throw .badRequest("\"state\" is required: 1 READY, 0 TRANSIT or -1 CONFLICT", field: "state")
        }
        let state = TrinaryState(rawValue: Int8(raw))!
        let conflict = try ResultSubmission.conflictDetail(reader)
        if state != .conflict && conflict != nil {
            throw .badRequest("\"conflict\" is only allowed with state -1", field: "conflict")
        }
        return AnswerSubmission(
            agentID: agentID, state: state, answer: try reader.string("answer", maxBytes: ResultSubmission.maxResultBytes),
            conflict: state == .conflict ? (conflict ?? ConflictDetail(type: .other)) : nil)
    }
}

/// A validated `POST /v1/ask` or `POST /v1/broadcast` body.
struct GatherRequest {
    var capability: String?
    var payload: String
    var weight: Double
    var windowMs: Int?
    var timeoutMs: Int?
    /// As a task's: a degraded node refuses gathers below DegradationPolicy.minimumPriority.
    var priority = 2
    /// At most this many targets, those with the shortest lead time (seed 001's `ask` sample).
    var sampleSize: Int?
    /// Seed 001 DEGRADED_SEVERE "human approval for all mesh-wide operations": the operator
    /// confirms that this one should go out although the node is degraded.
    var approved = false

    static func validate(_ body: JSONValue) throws(APIError) -> GatherRequest {
        let reader = try BodyReader(
            body, allowed: ["capability", "payload", "weight", "window_ms", "timeout_ms", "priority", "sample_size", "approved"])
        let capability = try reader.identifier("capability")
        if let capability, !RegistrationRequest.isIdentifier(capability, allowUppercase: false) {
            throw .badRequest("\"capability\" must be lower case: a–z, 0–9, '.', '_' or '-'", field: "capability")
        }
        var request = GatherRequest(
            capability: capability, payload: try reader.string("payload", maxBytes: TaskSubmission.maxPayloadBytes) ?? "",
            weight: try reader.number("weight", in: 0...TaskSubmission.maxWeight) ?? 0,
            windowMs: try reader.integer("window_ms", in: 20...60_000), timeoutMs: try reader.integer("timeout_ms", in: 50...120_000),
            priority: try reader.integer("priority", in: 0...3) ?? 2, sampleSize: try reader.integer("sample_size", in: 1...100_000))
        request.approved = try reader.bool("approved") ?? false
        return request
    }
}
