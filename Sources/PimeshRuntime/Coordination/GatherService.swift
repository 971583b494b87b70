import Logging
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore
import PimeshSystem
import Synchronization

/// `ask` and `broadcast` (seed 001 §3.2): plans send times so that answers arrive together,
/// sends in 10 ms buckets through the agents' inboxes, gathers trinary answers until the window
/// closes, and judges them with the trinary quorum. Operations live in RAM only.
final class GatherService: Sendable {
    enum Kind: String, Sendable {
        case ask, broadcast
    }

    struct Operation: Sendable {
        var kind: Kind
        var plan: ScatterGather.Plan
        var targets: [AgentRegistry.Candidate]
        /// Agent id → its index in `targets`, for the agents that were sent the message.
        var sent: [AgentID: Int]
        var answers: [AgentID: GatherReport.Answer] = [:]
        var states: [AgentID: TrinaryState] = [:]
        var late = 0
        /// Bytes of answer text held; past `maxAnswerBytes` answers are kept without it.
        var answerBytes = 0
        var answersWithoutText = 0
        /// Set when the window closed; the operation is forgotten `retention` later.
        var closedAt: Instant?
    }

    /// A thousand agents may each answer 64 KiB: the report (and the operation in RAM) keeps a
    /// page's worth of their text, and counts the rest.
    static let maxAnswerBytes = Paging.maxPageBytes

    let settings: ScatterGather.Settings
    let registry: AgentRegistry
    let tasks: TaskService
    let conflicts: ConflictService
    let writer: StoreWriter
    let kpis: KPIRecorder
    let metrics: LeadMetrics
    let logger: Logger
    private let operations = Mutex<[String: Operation]>([:])
    /// Set when the lead stops: operations close at once with what they have.
    private let draining = Atomic<Bool>(false)
    /// Closed operations stay this long so that stragglers are counted as late, not unknown.
    private let retention: Duration = .seconds(30)

    init(
        settings: ScatterGather.Settings, registry: AgentRegistry, tasks: TaskService, conflicts: ConflictService, writer: StoreWriter,
        kpis: KPIRecorder, metrics: LeadMetrics, logger: Logger
    ) {
        self.settings = settings
        self.registry = registry
        self.tasks = tasks
        self.conflicts = conflicts
        self.writer = writer
        self.kpis = kpis
        self.metrics = metrics
        self.logger = logger
    }

    @_optimize(size)  // cold: an operator's ask; its agents' answers take longer (the 25 MB budget)
    func run(_ kind: Kind, _ request: GatherRequest) async throws -> GatherReport {
        var settings = settings
        if let window = request.windowMs { settings.arrivalWindow = .milliseconds(window) }
        if let timeout = request.timeoutMs { settings.timeout = .milliseconds(timeout) }
        let gather = ScatterGather(settings: settings)
        let id = AgentID.random().description
        let start = Clock.monotonicNow()
        var targets = registry.gatherTargets(capability: request.capability, at: start, outstanding: tasks.snapshot.outstanding)
        if let sample = request.sampleSize, targets.count > sample {
            targets = Array(targets.sorted { $0.route.leadTimeMs(payloadWeight: request.weight) < $1.route.leadTimeMs(payloadWeight: request.weight) }.prefix(sample))
        }
        let plan = gather.plan(leadTimesMs: targets.map { $0.route.leadTimeMs(payloadWeight: request.weight) }, now: start)
        var sent: [AgentID: Int] = [:]
        for bucket in plan.buckets {
            for index in bucket.indices { sent[targets[index].id] = index }
        }
        operations.withLock { ops in
            // Pruned here rather than by a timer per operation: nothing sleeps for a closed one.
            ops = ops.filter { _, operation in operation.closedAt.map { start - $0 < retention } ?? true }
            ops[id] = Operation(kind: kind, plan: plan, targets: targets, sent: sent)
        }
        // However the gather ends (its task cancelled, the lead stopping), the operation closes.
        defer {
            operations.withLock { ops in if ops[id]?.closedAt == nil { ops[id]?.closedAt = Clock.monotonicNow() } }
            // Its message still waiting for an agent that never fetched it could only be
            // answered late: held, it was one more item per ask in that inbox for good.
            tasks.withdraw(operation: id)
        }
        for bucket in plan.buckets {
            // In steps of at most 100 ms: a stopping lead must not wait out a long send plan.
            while !isDraining, case let delay = bucket.sendAt - Clock.monotonicNow(), delay > .zero {
                try await Task.sleep(for: min(delay, .milliseconds(100)))
            }
            let replyWithin = Int((plan.arrivalDeadline - bucket.sendAt).milliseconds.rounded())
            for index in bucket.indices {
                tasks.deliver(
                    message: WorkItem(
                        kind: kind == .ask ? .ask : .broadcast, id: id, capability: request.capability, payload: request.payload,
                        weight: request.weight, replyWithinMs: replyWithin),
                    to: targets[index].id)
            }
        }
        // Seed §3.2 phase 5: poll every 10 ms until the window closes or everyone answered.
        while Clock.monotonicNow() < plan.closesAt && !isDraining {
            let done = operations.withLock { ops in ops[id].map { $0.answers.count >= $0.sent.count } ?? true }
            if done { break }
            try await Task.sleep(for: min(.milliseconds(10), plan.closesAt - Clock.monotonicNow()))
        }
        let operation = operations.withLock { ops -> Operation in
            ops[id]!.closedAt = Clock.monotonicNow()
            return ops[id]!
        }
        var tally = ScatterGather.Tally(sent: plan.sentCount, late: operation.late)
        for state in operation.states.values {
            switch state {
            case .ready: tally.ready += 1
            case .conflict: tally.conflict += 1
            case .transit: tally.transit += 1
            }
        }
        let outcome = gather.judge(tally)
        let duration = Clock.monotonicNow() - start
        kpis.recordMissedArrivals(tally.silent)
        kpis.recordOperation(achievedQuorum: outcome.quorum.achieved, durationMs: duration.milliseconds)
        metrics.gatherFinished(decision: outcome.quorum.decision, after: duration)
        return GatherReport(
            id: id, kind: kind.rawValue, capability: request.capability, decision: outcome.quorum.decision.rawValue,
            reason: outcome.quorum.reason, recommendation: outcome.quorum.recommendation,
            confidence: ImpedanceView.round(outcome.quorum.confidence), gather: outcome.gatherSucceeded ? "SUCCESS" : "PARTIAL",
            responseRatio: ImpedanceView.round(outcome.responseRatio), targets: targets.count, sent: tally.sent,
            skipped: plan.skipped.count, ready: tally.ready, conflict: tally.conflict, transit: tally.transit, silent: tally.silent,
            late: tally.late, windowMs: Int(settings.arrivalWindow.milliseconds), durationMs: ImpedanceView.round(duration.milliseconds),
            answers: kind == .ask ? operation.answers.values.sorted { $0.agentName < $1.agentName } : [],
            answersWithoutText: operation.answersWithoutText > 0 ? operation.answersWithoutText : nil,
            skippedAgents: plan.skipped.map { .init(agentName: targets[$0.index].name, reason: $0.reason.description) })
    }

    private var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Ends every running ask and broadcast with the answers it has, so that a stopping lead
    /// does not wait out their windows (up to `timeout_ms`).
    func drain() {
        draining.store(true, ordering: .relaxed)
    }

    /// Operations still held (running or recently closed).
    var operationCount: Int {
        operations.withLock { $0.count }
    }

    enum AnswerResult: String {
        case counted, late, duplicate
    }

    func answer(operationID: String, _ submission: AnswerSubmission) async throws -> AnswerResult {
        let now = Clock.monotonicNow()
        let tolerance = kpis.tolerance
        let result: Result<(AnswerResult, predicted: Double, actual: Double, inWindow: Bool), APIError> = operations.withLock { ops in
            // Pruning waits for the next gather: an operation closed longer ago is gone already.
            if let closedAt = ops[operationID]?.closedAt, now - closedAt >= retention { ops[operationID] = nil }
            guard var operation = ops[operationID] else {
                return .failure(APIError(status: .notFound, message: "no ask or broadcast with id \(operationID) (or it ended over 30 s ago)", field: "id"))
            }
            guard let index = operation.sent[submission.agentID] else {
                return .failure(APIError(status: .conflict, message: "agent \(submission.agentID) was not sent operation \(operationID)", field: "agent_id"))
            }
            let closed = operation.closedAt != nil
            if closed || now > operation.plan.arrivalDeadline {
                operation.late += closed ? 0 : 1
                ops[operationID] = operation
                return .success((.late, 0, 0, false))
            }
            if operation.states[submission.agentID] != nil { return .success((.duplicate, 0, 0, false)) }
            let actual = (now - operation.plan.startedAt).milliseconds
            let predicted = operation.plan.predictedArrival[index].map { ($0 - operation.plan.startedAt).milliseconds } ?? actual
            operation.states[submission.agentID] = submission.state
            var text = submission.answer
            if let given = text {
                if operation.answerBytes + given.utf8.count > Self.maxAnswerBytes {
                    text = nil
                    operation.answersWithoutText += 1
                } else {
                    operation.answerBytes += given.utf8.count
                }
            }
            operation.answers[submission.agentID] = GatherReport.Answer(
                agentName: operation.targets[index].name, state: submission.state.description, answer: text,
                arrivalMs: ImpedanceView.round(actual), predictedArrivalMs: ImpedanceView.round(predicted))
            ops[operationID] = operation
            return .success((.counted, predicted, actual, operation.plan.isInArrivalWindow(now, tolerance: tolerance)))
        }
        let (answer, predicted, actual, inWindow) = try result.get()
        guard answer == .counted else { return answer }
        kpis.recordArrival(actualMs: actual, predictedMs: predicted, inWindow: inWindow, state: submission.state)
        if let detail = submission.conflict {
            var record = conflicts.record(
                agentID: submission.agentID, source: "op:\(operationID)", detail: detail, atMs: Clock.wallMilliseconds())
            let seq = Mutex<Int64>(0)
            try await writer.write { [record] connection in
                let appended = try ConflictStore.append(record, in: connection)
                seq.withLock { $0 = appended }
            }
            record.seq = seq.withLock { $0 }
            if conflicts.applied(record) { tasks.requeueInbox(of: record.agentID) }
        }
        return .counted
    }
}
