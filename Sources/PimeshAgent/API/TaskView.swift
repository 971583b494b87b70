import PimeshCore

/// One task as the API shows it (`POST /v1/tasks`, `GET /v1/tasks/{id}`).
public struct TaskView: Codable, Sendable, Equatable {
    public var id: String
    public var idempotencyKey: String?
    public var capability: String
    /// Left out of list pages unless asked for (`payload=true`): each may be 64 KiB.
    public var payload: String?
    public var weight: Double
    public var deadlineMs: Int?
    public var state: String
    /// SEND_NOW when the task went (or will go) to an agent, WAIT while a degradation level
    /// holds it in the queue, SKIP when it never will.
    public var decision: String
    /// Why a WAIT task waits.
    public var waitReason: String?
    /// Seed 001 `ttl_ms`: dropped (`ttl_exceeded`) if still queued this long after submission.
    public var ttlMs: Int?
    public var skipReason: String?
    public var skipCode: String?
    public var agentID: String?
    public var agentName: String?
    public var attempts: Int
    public var predictedArrivalMs: Double?
    /// The prediction padded by the agent's drift (`Impedance.leadTimeMs`); a result within
    /// this + 50 ms counts as a hit of the arrival window.
    public var leadTimeMs: Double?
    /// Expected time to a successful answer from the chosen agent (`RouteCandidate.costMs`):
    /// what the router ranked by.
    public var costMs: Double?
    /// Why the router chose this agent, in one line.
    public var routing: String?
    /// The next best agent when the task was routed: its name, predicted arrival and cost.
    public var runnerUp: RunnerUp?
    public var candidates: Int?
    public var submittedAtMs: Int64
    public var finishedAtMs: Int64?
    /// From handing the task over to its result, as the lead measured it.
    public var actualMs: Double?
    public var result: String?
    public var error: String?
    /// Seed 001: 0 background, 1 low, 2 normal, 3 critical.
    public var priority: Int?

    public struct RunnerUp: Codable, Sendable, Equatable {
        public var agentName: String
        public var predictedArrivalMs: Double
        public var costMs: Double?

        public init(agentName: String, predictedArrivalMs: Double, costMs: Double? = nil) {
            self.agentName = agentName
            self.predictedArrivalMs = predictedArrivalMs
            self.costMs = costMs
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, idempotencyKey, capability, payload, weight, deadlineMs, state, decision, waitReason, ttlMs, skipReason, skipCode
        case agentID = "agentId"
        case agentName, attempts, predictedArrivalMs, leadTimeMs, costMs, routing, runnerUp, candidates, submittedAtMs, finishedAtMs, actualMs, result, error
        case priority
    }

    public init(
        id: String, idempotencyKey: String?, capability: String, payload: String?, weight: Double, deadlineMs: Int?, state: String,
        decision: String, skipReason: String?, skipCode: String?, agentID: String?, agentName: String?, attempts: Int,
        predictedArrivalMs: Double?, leadTimeMs: Double?, runnerUp: RunnerUp?, candidates: Int?, submittedAtMs: Int64, finishedAtMs: Int64?,
        actualMs: Double?, result: String?, error: String?, priority: Int? = nil
    ) {
        self.priority = priority
        self.id = id
        self.idempotencyKey = idempotencyKey
        self.capability = capability
        self.payload = payload
        self.weight = weight
        self.deadlineMs = deadlineMs
        self.state = state
        self.decision = decision
        self.skipReason = skipReason
        self.skipCode = skipCode
        self.agentID = agentID
        self.agentName = agentName
        self.attempts = attempts
        self.predictedArrivalMs = predictedArrivalMs
        self.leadTimeMs = leadTimeMs
        self.runnerUp = runnerUp
        self.candidates = candidates
        self.submittedAtMs = submittedAtMs
        self.finishedAtMs = finishedAtMs
        self.actualMs = actualMs
        self.result = result
        self.error = error
    }

    public var isFinished: Bool {
        TaskState(rawValue: state)?.isTerminal ?? false
    }
}

public struct TaskList: Codable, Sendable {
    public var tasks: [TaskView]
    /// Every state with its count over all tasks the lead holds.
    public var counts: [String: Int]
    /// Pass as `cursor` for the next page; absent on the last one.
    public var nextCursor: String?
    /// Finished tasks deleted by retention since the lead started (docs/operations.md, "Bounds").
    public var pruned: Int?

    public init(tasks: [TaskView], counts: [String: Int], nextCursor: String? = nil, pruned: Int? = nil) {
        self.tasks = tasks
        self.counts = counts
        self.nextCursor = nextCursor
        self.pruned = pruned
    }
}
