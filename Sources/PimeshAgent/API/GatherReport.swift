/// The outcome of `POST /v1/ask` or `POST /v1/broadcast`: who was sent what when, who
/// answered in the window, and the trinary quorum's decision.
public struct GatherReport: Codable, Sendable {
    public var id: String
    public var kind: String
    public var capability: String?
    /// PROCEED, WAIT, RESOLVE_CONFLICTS or RETRY (seed 001 §5.2).
    public var decision: String
    public var reason: String
    public var recommendation: String
    public var confidence: Double
    /// SUCCESS when at least the minimum ratio answered READY in the window, else PARTIAL.
    public var gather: String
    public var responseRatio: Double
    public var targets: Int
    public var sent: Int
    public var skipped: Int
    public var ready: Int
    public var conflict: Int
    public var transit: Int
    public var silent: Int
    public var late: Int
    public var windowMs: Int
    public var durationMs: Double
    public var answers: [Answer]
    /// Answers counted but listed without their text: the report holds at most 1 MiB of it.
    public var answersWithoutText: Int?
    public var skippedAgents: [Skipped]

    public struct Answer: Codable, Sendable {
        public var agentName: String
        public var state: String
        public var answer: String?
        public var arrivalMs: Double
        public var predictedArrivalMs: Double

        public init(agentName: String, state: String, answer: String?, arrivalMs: Double, predictedArrivalMs: Double) {
            self.agentName = agentName
            self.state = state
            self.answer = answer
            self.arrivalMs = arrivalMs
            self.predictedArrivalMs = predictedArrivalMs
        }
    }

    public struct Skipped: Codable, Sendable {
        public var agentName: String
        public var reason: String

        public init(agentName: String, reason: String) {
            self.agentName = agentName
            self.reason = reason
        }
    }

    public init(
        id: String, kind: String, capability: String?, decision: String, reason: String, recommendation: String, confidence: Double,
        gather: String, responseRatio: Double, targets: Int, sent: Int, skipped: Int, ready: Int, conflict: Int, transit: Int,
        silent: Int, late: Int, windowMs: Int, durationMs: Double, answers: [Answer], answersWithoutText: Int? = nil, skippedAgents: [Skipped]
    ) {
        self.id = id
        self.kind = kind
        self.capability = capability
        self.decision = decision
        self.reason = reason
        self.recommendation = recommendation
        self.confidence = confidence
        self.gather = gather
        self.responseRatio = responseRatio
        self.targets = targets
        self.sent = sent
        self.skipped = skipped
        self.ready = ready
        self.conflict = conflict
        self.transit = transit
        self.silent = silent
        self.late = late
        self.windowMs = windowMs
        self.durationMs = durationMs
        self.answers = answers
        self.answersWithoutText = answersWithoutText
        self.skippedAgents = skippedAgents
    }
}
