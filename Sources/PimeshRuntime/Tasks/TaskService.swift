import Logging
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// Durable tasks: accepted only once committed, routed to the agent with the lowest predicted
/// arrival, handed out through long polls, finished exactly once. Its `run` loop requeues
/// tasks whose lease ran out and dispatches queued ones as agents become READY.
final class TaskService: Service, Sendable {
    struct Settings: Sendable {
        /// A task handed to an agent and not finished within this goes back to the queue.
        var lease: Duration = .seconds(30)
        /// Seed 001 `ttl_ms` for tasks that do not give one: a task still queued this long
        /// after submission is dropped (`ttl_exceeded`) instead of running stale.
        var defaultTTLMs = 3_600_000
        var maxAttempts = 3
        var dispatchInterval: Duration = .milliseconds(50)
        /// Finished tasks kept in RAM for status and idempotent answers, up to this many of their
        /// stored bytes; older ones are read from SQLite.
        var recentMaxBytes = 2 << 20
        /// Past this many open tasks (queued, assigned, running) submissions get 429.
        var maxOpen = 10_000
        var retention = TaskRetention(maxAgeMs: 7 * 86_400_000, maxFinished: 10_000, maxBytes: 64 << 20)
        /// Retention looks at the store this often, and sooner when a bound is passed.
        var retentionInterval: Duration = .seconds(60)
        /// Rows deleted per transaction, so that pruning never holds the writer long.
        var pruneBatch = 256
        /// Work goes out as datagrams to agents whose v2 heartbeats ask for it.
        var workDatagrams = true
        var outbox = WorkOutbox<OutboxItem>.Settings()
        var linkStaleAfter: Duration = .seconds(1)
    }

    struct LiveTask: Sendable {
        var row: TaskRow
        /// `row.submittedAtMs` on this run's monotonic clock, which time to live is measured on
        /// (TaskExpiry): the wall clock can step.
        var submittedAt: Instant
        var routedAt: Instant?
        var estimatedProcessingMs: Double?
        var leaseExpires: Instant?
        var runnerUp: TaskView.RunnerUp?
        var costMs: Double?
        var routing: String?
        /// Why a queued task waits although an agent could take it (a degradation level).
        var held: String?
        var candidates: Int?
        /// False between routing and the durable commit: counted as the agent's queue, not yet handed out.
        var durable: Bool
        /// Agents the task was taken back from (lease run out, agent failed), newest last. Their
        /// work may still finish: a late result from one of them ends the task like any other
        /// attempt's, where an agent that never held it is refused (issue 12). In memory only,
        /// and at most `formerHoldersKept`: after a lead restart a late result is refused.
        var formerHolders: [AgentID] = []
        /// Its holder posted a result the store could not commit (a full disk): the task is
        /// done as far as the agent goes, and a lease that runs out now is the lead's failure:
        /// it is renewed instead of requeueing the task and using up an attempt.
        var resultUnstored = false

        static let formerHoldersKept = 8

        /// Handed out `tasks.max_attempts` times without a result: it ends as failed.
        mutating func giveUp(_ why: String, atMs wallMs: Int64) {
            row.state = .failed
            row.error = why
            row.finishedAtMs = wallMs
        }

        mutating func takeBack(from agent: AgentID) {
            formerHolders.removeAll { $0 == agent }
            formerHolders.append(agent)
            if formerHolders.count > Self.formerHoldersKept { formerHolders.removeFirst() }
        }
    }

    struct Inbox: Sendable {
        var items: [WorkItem] = []
        var waiter: Waiter?
    }

    struct Waiter: Sendable {
        var token: UInt64
        var max: Int
        var continuation: CheckedContinuation<[WorkItem], Never>
        /// Ends the poll empty after its wait; cancelled when the poll is answered sooner, so
        /// an agent that re-polls does not leave a sleeping task per poll behind.
        var timer: Task<Void, Never>?

        func answer(_ items: [WorkItem]) {
            timer?.cancel()
            continuation.resume(returning: items)
        }
    }

    struct Counters: Sendable {
        var submitted = 0
        var skipped = 0
        var duplicateResults = 0
        var requeued = 0
        var finished: [TaskState: Int] = [:]
    }

    struct State: Sendable {
        var open: [String: LiveTask] = [:]
        var queued: [String] = []
        var byKey: [String: String] = [:]
        var recent: [String: TaskRow] = [:]
        var recentOrder: [String] = []
        var recentHead = 0
        var recentBytes = 0
        /// What the store holds, as of the last pruning pass plus what was written since.
        var storedFinished = 0
        var storedBytes = 0
        var pruned = 0
        /// Submissions admitted and not yet committed: counted against the bounds, so that a
        /// burst of them cannot pass a bound together.
        var admittedOpen = 0
        var admittedBytes = 0
        var inboxes: [AgentID: Inbox] = [:]
        var nextToken: UInt64 = 0
        var counters = Counters()
        /// Set when the lead stops: long polls answer at once, so that the API can drain.
        var draining = false
        /// Agents that take their work as datagrams, and those with datagrams not yet acknowledged.
        var links: [AgentID: WorkLink] = [:]
        var linksAwaitingAck: Set<AgentID> = []
        var datagrams = StatusReport.WorkDatagrams()

        func datagramCounters(links: Int) -> StatusReport.WorkDatagrams {
            var counters = datagrams
            counters.agents = links
            return counters
        }
    }

    let settings: Settings
    let registry: AgentRegistry
    let writer: StoreWriter
    /// Made at the lead's start, from the newest finish the store holds (`restoreTotals`):
    /// what retention deletes is judged on it.
    private let retentionClock = Mutex(RetentionClock())
    let store: TaskStore
    let kpis: KPIRecorder
    let metrics: LeadMetrics
    let conflicts: ConflictService
    let logger: Logger
    let health: NodeHealth
    private let router = TaskRouter()
    /// Rung when a task is queued or leased, so the event-driven loop looks again.
    let doorbell = Doorbell()
    /// Rung when the store passes a retention bound, so that pruning does not wait its interval.
    let retentionDoorbell = Doorbell()
    let state = Mutex(State())
    /// The heartbeat socket, through which work datagrams leave.
    let outlet: DatagramOutlet
    /// Told of every task that succeeded or failed (not conflicts: seed 001 says a conflict is
    /// not a failure): the incident triggers' rates. Set once by `Lead`.
    private let outcomeSink = Mutex<Callback<@Sendable (_ capability: String, _ agent: String, _ succeeded: Bool, _ error: String?) -> Void>?>(nil)

    func reportOutcomes(to sink: @escaping @Sendable (_ capability: String, _ agent: String, _ succeeded: Bool, _ error: String?) -> Void) {
        outcomeSink.withLock { $0 = Callback(sink) }
    }

    func reportOutcome(_ row: TaskRow) {
        guard row.state == .succeeded || row.state == .failed, let sink = outcomeSink.withLock({ $0 }) else { return }
        let agent = row.agentID.flatMap { registry.name(of: $0) } ?? "none"
        sink.call(row.capability, agent, row.state == .succeeded, row.error)
    }

    init(
        settings: Settings, registry: AgentRegistry, writer: StoreWriter, store: TaskStore, kpis: KPIRecorder, metrics: LeadMetrics,
        conflicts: ConflictService, logger: Logger, health: NodeHealth = NodeHealth(), outlet: DatagramOutlet = DatagramOutlet()
    ) {
        self.outlet = outlet
        self.health = health
        self.settings = settings
        self.registry = registry
        self.writer = writer
        self.store = store
        self.kpis = kpis
        self.metrics = metrics
        self.conflicts = conflicts
        self.logger = logger
    }

    /// Tasks accepted before a restart and never finished go back to the queue with their
    /// attempt count; they are dispatched once agents heartbeat again.
    func restore(_ rows: [TaskRow], nowWallMs: Int64 = Clock.wallMilliseconds(), now: Instant = Clock.monotonicNow()) {
        state.withLock { state in
            for var row in rows {
                row.state = .queued
                row.agentID = nil
                let submittedAt = WallAge.instant(ofWallMs: row.submittedAtMs, nowWallMs: nowWallMs, now: now)
                state.open[row.id] = LiveTask(row: row, submittedAt: submittedAt, durable: true)
                state.queued.append(row.id)
                doorbell.ring()
                if let key = row.idempotencyKey { state.byKey[key] = row.id }
            }
            state.counters.requeued += rows.count
        }
    }

    // MARK: - Submit

    enum SubmitAnswer {
        case created(TaskView)
        /// The idempotency key named a task that already exists.
        case existing(TaskView)
    }

    func submit(_ submission: TaskSubmission) async throws -> SubmitAnswer {
        if let key = submission.idempotencyKey {
            if let existing = try await existingTask(key: key) { return .existing(existing) }
        }
        let admittedBytes = TaskRetention.storedBytes(textByteCounts: [
            submission.payload.utf8.count, submission.capability.utf8.count, submission.idempotencyKey?.utf8.count ?? 0,
        ])
        try await admit(bytes: admittedBytes)
        defer {
            state.withLock { state in
                state.admittedOpen -= 1
                state.admittedBytes -= admittedBytes
            }
        }
        let started = Clock.monotonicNow()
        let now = started
        let wallMs = Clock.wallMilliseconds()
        let id = AgentID.random().description
        let routed: LiveTask? = state.withLock { state in
            if let key = submission.idempotencyKey, state.byKey[key] != nil { return nil }
            let policy = health.policy
            var candidates: [AgentRegistry.Candidate] = []
            let decision: TaskRouter.Decision
            let disposition = health.taskDisposition(priority: submission.priority)
            if disposition == .shed {
                decision = .skip(.shed(level: policy.level, priority: submission.priority, minimumPriority: health.shedBelowPriority))
            } else if registry.isGroupBreakerOpen(submission.capability) {
                decision = .skip(.groupBreakerOpen(capability: submission.capability))
            } else {
                candidates = registry.candidates(capability: submission.capability, at: now, outstanding: Self.outstanding(in: state))
                decision = router.route(
                    candidates.map(\.route), payloadWeight: submission.weight, deadlineMs: submission.deadlineMs.map(Double.init),
                    now: now)
            }
            // Held by the level, it waits for the node to recover, not for an agent to be free
            // now: only a capability nobody has (or a deadline nobody meets) turns it away.
            let heldByLevel: Bool
            switch decision {
            case .sendNow, .skip(.noAvailableAgent): heldByLevel = disposition == .queue
            case .skip: heldByLevel = false
            }
            var task = LiveTask(
                row: TaskRow(
                    id: id, idempotencyKey: submission.idempotencyKey, capability: submission.capability, payload: submission.payload,
                    weight: submission.weight, deadlineMs: submission.deadlineMs, state: .skipped, agentID: nil, attempts: 0,
                    submittedAtMs: wallMs),
                submittedAt: now, durable: false)
            task.row.priority = submission.priority
            task.row.ttlMs = submission.ttlMs ?? settings.defaultTTLMs
            switch decision {
            case _ where heldByLevel:
                // Seed MODERATE "queue non-urgent operations". A deadline is a time to live too:
                // held past it, the task could no longer be in time.
                task.row.state = .queued
                if let deadline = submission.deadlineMs { task.row.ttlMs = min(task.row.ttlMs ?? deadline, deadline) }
                task.held = Self.heldReason(policy)
            case .sendNow(let choice):
                assign(&task, to: choice, among: candidates, now: now)
            case .skip(.noAvailableAgent) where registry.hasPendingAgent(capability: submission.capability, at: now):
                // A lead that just started has not heard its agents yet: the task waits for
                // them (the dispatch tick routes it) instead of being skipped.
                task.row.state = .queued
            case .skip(let reason):
                task.row.skipReason = reason.description
                task.row.error = reason.code
                task.row.finishedAtMs = wallMs
                task.candidates = candidates.count
            }
            state.open[id] = task
            if let key = submission.idempotencyKey { state.byKey[key] = id }
            return task
        }
        guard var task = routed else {
            // Another submission with this key got there first: answer with its task.
            guard let key = submission.idempotencyKey, let existing = try await existingTask(key: key) else {
                throw APIError(status: .conflict, message: "a task with this idempotency key is being created; retry", field: "idempotency_key")
            }
            return .existing(existing)
        }
        let row = task.row
        do {
            try await writer.write { connection in try TaskStore.save(row, in: connection) }
        } catch {
            state.withLock { state in
                state.open[id] = nil
                if let key = submission.idempotencyKey, state.byKey[key] == id { state.byKey[key] = nil }
            }
            throw error
        }
        metrics.taskAccepted(after: Clock.monotonicNow() - started, skipped: row.state == .skipped)
        task = state.withLock { state in
            state.counters.submitted += 1
            state.storedBytes += row.storedBytes
            guard var live = state.open[id] else { return task }
            live.durable = true
            if live.row.state == .skipped {
                state.open[id] = nil
                state.counters.skipped += 1
                state.counters.finished[.skipped, default: 0] += 1
                remember(live.row, in: &state)
            } else if live.row.state == .queued {
                state.open[id] = live
                state.queued.append(id)
                doorbell.ring()
            } else {
                // The prediction is for hand-over to result: the commit before it is not the agent's time.
                live.routedAt = Clock.monotonicNow()
                live.leaseExpires = live.routedAt! + lease
                state.open[id] = live
                if let agent = live.row.agentID {
                    deliver(Self.workItem(live.row), to: agent, in: &state)
                }
            }
            return live
        }
        return .created(view(of: task))
    }

    // MARK: - Bounds

    /// Refuses a submission past `max_open` (429) or, when pruning finished tasks cannot make
    /// room for it, past `max_stored_mb` (507).
    private func admit(bytes: Int) async throws {
        enum Admission { case admitted, tooManyOpen(Int), noRoom }
        for _ in 0..<64 {
            let admission: Admission = state.withLock { state in
                let open = state.open.count + state.admittedOpen
                guard open < settings.maxOpen else { return .tooManyOpen(open) }
                guard settings.retention.admits(bytes: bytes, storedBytes: state.storedBytes + state.admittedBytes) else { return .noRoom }
                state.admittedOpen += 1
                state.admittedBytes += bytes
                return .admitted
            }
            switch admission {
            case .admitted:
                return
            case .tooManyOpen(let open):
                throw APIError(
                    status: .tooManyRequests,
                    message: "the lead holds \(open) open tasks, its limit (tasks.max_open); retry when some have finished")
            case .noRoom:
                break
            }
            let pruned = try await pruneBatch(makeRoom: true)
            // Another submission may have made the room meanwhile: only an empty pass that
            // leaves no room is a refusal.
            if pruned.ids.isEmpty && !settings.retention.admits(bytes: bytes, storedBytes: pruned.totals.bytes) {
                let budget = settings.retention.maxBytes >> 20
                throw APIError(
                    status: .insufficientStorage,
                    message: "open tasks take \(pruned.totals.openBytes >> 20) MiB of the \(budget) MiB the lead stores (tasks.max_stored_mb) "
                        + "and no finished task is left to prune; retry when some have finished")
            }
        }
        throw APIError(
            status: .serviceUnavailable, message: "other submissions took the room pruning made (tasks.max_stored_mb); retry",
            retryAfterSeconds: 1)
    }

    /// Deletes one batch of finished tasks that retention no longer keeps, and brings the lead's
    /// counts in line with the store.
    @discardableResult
    func pruneBatch(makeRoom: Bool = false) async throws -> TaskStore.Pruned {
        let retention = settings.retention
        let batch = settings.pruneBatch
        let outcome = Mutex(TaskStore.Pruned())
        let nowMs = retentionClock.withLock { $0 }.nowMs()
        try await writer.write { connection in
            let pruned = try TaskStore.pruneFinished(
                retention: retention, nowMs: nowMs, batch: batch, makeRoom: makeRoom, in: connection)
            outcome.withLock { $0 = pruned }
        }
        let pruned = outcome.withLock { $0 }
        state.withLock { state in
            state.storedBytes = pruned.totals.bytes
            state.storedFinished = pruned.totals.finished
            state.pruned += pruned.ids.count
            for id in pruned.ids { Self.forget(id, in: &state) }
        }
        return pruned
    }

    /// One retention pass: batches until nothing more is due, with a pause between them so that
    /// submissions and results share the writer.
    func prune() async {
        do {
            while try await pruneBatch().ids.count == settings.pruneBatch {
                try await Task.sleep(for: .milliseconds(20))
            }
        } catch is CancellationError {
        } catch where writer.isFailing {
            // The writer already logs a store that keeps failing, once every 30 s: a line per
            // pass here would only repeat it.
        } catch {
            logger.warning("pruning finished tasks failed; retrying at the next pass", metadata: ["error": "\(error)"])
        }
    }

    /// Starts the counts from what the store holds when the lead starts.
    func restoreTotals(_ totals: TaskStore.Totals, newestFinishedAtMs: Int64?) {
        retentionClock.withLock { $0 = RetentionClock(newestStoredMs: newestFinishedAtMs) }
        state.withLock { state in
            state.storedBytes = totals.bytes
            state.storedFinished = totals.finished
        }
    }

    /// The task an idempotency key names, once it is durable; nil when there is none.
    private func existingTask(key: String) async throws -> TaskView? {
        let deadline = Clock.monotonicNow() + .seconds(5)
        while true {
            let found: (view: TaskView?, pending: Bool, known: Bool) = state.withLock { state in
                guard let id = state.byKey[key] else { return (nil, false, false) }
                if let live = state.open[id] { return (live.durable ? view(of: live) : nil, !live.durable, true) }
                if let row = state.recent[id] { return (view(of: row), false, true) }
                return (nil, false, false)
            }
            if let view = found.view { return view }
            if !found.pending {
                if found.known { return nil }
                return try await Blocking.run { [store] in try store.load(idempotencyKey: key) }.map { view(of: $0) }
            }
            if Clock.monotonicNow() > deadline { return nil }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    // MARK: - Long poll

    /// Ends every waiting long poll with nothing: the HTTP server waits for open requests when
    /// it stops, and a poll of an agent that is gone would otherwise hold the lead's exit up to
    /// `long_poll_max_ms`.
    func drain() {
        let waiters: [Waiter] = state.withLock { state in
            state.draining = true
            var waiters: [Waiter] = []
            for agent in Array(state.inboxes.keys) {
                if let waiter = state.inboxes[agent]?.waiter {
                    waiters.append(waiter)
                    state.inboxes[agent]?.waiter = nil
                }
            }
            return waiters
        }
        for waiter in waiters { waiter.answer([]) }
    }

    /// Hands the agent what waits for it; when nothing does, waits up to `wait` for something.
    func pull(agent: AgentID, max: Int, wait: Duration) async -> [WorkItem] {
        let now = Clock.monotonicNow()
        var writes: [TaskRow] = []
        let immediate: [WorkItem] = state.withLock { state in
            take(from: agent, max: max, now: now, in: &state, writes: &writes)
        }
        persist(writes)
        if !immediate.isEmpty || wait <= .zero { return immediate }
        let token = state.withLock { state -> UInt64 in
            state.nextToken += 1
            return state.nextToken
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[WorkItem], Never>) in
                var writes: [TaskRow] = []
                enum Outcome { case answered([WorkItem]), waiting }
                // Drain is checked under the same lock that installs the waiter: a poll that
                // arrives just after `drain()` answers at once instead of holding shutdown.
                let outcome: Outcome = state.withLock { state in
                    if state.draining || Task.isCancelled { return .answered([]) }
                    let items = take(from: agent, max: max, now: Clock.monotonicNow(), in: &state, writes: &writes)
                    if !items.isEmpty { return .answered(items) }
                    // One long poll per agent: a newer one replaces an older, which returns empty.
                    state.inboxes[agent, default: Inbox()].waiter?.answer([])
                    state.inboxes[agent, default: Inbox()].waiter = Waiter(token: token, max: max, continuation: continuation)
                    return .waiting
                }
                persist(writes)
                switch outcome {
                case .answered(let items):
                    continuation.resume(returning: items)
                case .waiting:
                    let timer = Task {
                        try? await Task.sleep(for: wait)
                        if !Task.isCancelled { self.endPoll(of: agent, token: token) }
                    }
                    let stillWaiting = state.withLock { state -> Bool in
                        guard state.inboxes[agent]?.waiter?.token == token else { return false }
                        state.inboxes[agent]?.waiter?.timer = timer
                        return true
                    }
                    if !stillWaiting { timer.cancel() }
                }
            }
        } onCancel: {
            endPoll(of: agent, token: token)
        }
    }

    /// Ends one long poll empty, if it still waits.
    private func endPoll(of agent: AgentID, token: UInt64) {
        let waiter: Waiter? = state.withLock { state in
            guard let waiter = state.inboxes[agent]?.waiter, waiter.token == token else { return nil }
            state.inboxes[agent]?.waiter = nil
            return waiter
        }
        waiter?.answer([])
    }

    /// Long polls waiting now (tests check that none is left behind).
    var waitingPolls: Int {
        state.withLock { $0.inboxes.values.filter { $0.waiter != nil }.count }
    }

    /// Takes up to `max` items; tasks among them start RUNNING with one more attempt.
    func take(from agent: AgentID, max: Int, now: Instant, in state: inout State, writes: inout [TaskRow]) -> [WorkItem] {
        guard var inbox = state.inboxes[agent], !inbox.items.isEmpty else { return [] }
        let count = min(max, inbox.items.count)
        let taken = inbox.items.prefix(count)
        inbox.items.removeFirst(count)
        state.inboxes[agent] = inbox
        var items: [WorkItem] = []
        for var item in taken {
            if item.kind == .task {
                guard var live = state.open[item.id] else { continue }
                live.row.state = .running
                live.row.attempts += 1
                live.leaseExpires = now + lease
                doorbell.ring()
                state.open[live.row.id] = live
                item.attempt = live.row.attempts
                writes.append(live.row)
            }
            items.append(item)
        }
        return items
    }

    /// Puts an item in an agent's inbox, or straight into its waiting long poll.
    func deliver(_ item: WorkItem, to agent: AgentID, in state: inout State) {
        state.inboxes[agent, default: Inbox()].items.append(item)
        guard let waiter = state.inboxes[agent]?.waiter else {
            var writes: [TaskRow] = []
            sendDatagrams(to: agent, now: Clock.monotonicNow(), in: &state, writes: &writes)
            persist(writes)
            return
        }
        state.inboxes[agent]?.waiter = nil
        var writes: [TaskRow] = []
        let items = take(from: agent, max: waiter.max, now: Clock.monotonicNow(), in: &state, writes: &writes)
        waiter.answer(items)
        persist(writes)
    }

    /// Ask and broadcast messages share the agents' inboxes with tasks.
    func deliver(message: WorkItem, to agent: AgentID) {
        state.withLock { deliver(message, to: agent, in: &$0) }
    }

    /// An ask or broadcast closed: its messages leave the inboxes they still wait in, and the
    /// outboxes of agents that have not acknowledged them.
    func withdraw(operation id: String) {
        state.withLock { state in
            // The keys first: changing values while walking the dictionary's indices copied it.
            let holding = state.inboxes.filter { $0.value.items.contains { $0.kind != .task && $0.id == id } }.map(\.key)
            for agent in holding { state.inboxes[agent]?.items.removeAll { $0.kind != .task && $0.id == id } }
            // Sent and not acknowledged: sending it again (up to eight times) would only bring a late answer.
            for agent in state.linksAwaitingAck {
                let removed = state.links[agent]?.outbox.remove { $0.carried == .message(id) } ?? 0
                state.datagrams.withdrawn = (state.datagrams.withdrawn ?? 0) + removed
            }
        }
    }

    /// State changes nobody waits for (handed out, requeued) go through the group commit;
    /// losing one to a crash only means the task is requeued from its previous state.
    func persist(_ rows: [TaskRow]) {
        for row in rows {
            writer.enqueue(key: "task:" + row.id) { connection in try TaskStore.save(row, in: connection) }
        }
    }

    // MARK: - Results

    enum ResultAnswer {
        case accepted(TaskView)
        case alreadyFinished(TaskView)
    }

    func complete(taskID: String, with submission: ResultSubmission) async throws -> ResultAnswer {
        let now = Clock.monotonicNow()
        let wallMs = Clock.wallMilliseconds()
        guard registry.name(of: submission.agentID) != nil else {
            throw APIError(status: .notFound, message: "no agent with id \(submission.agentID)", field: "agent_id")
        }
        enum Claim {
            case claimed(LiveTask, finished: TaskRow, heldSlot: Bool, refill: Bool)
            case finished(TaskRow)
            case pending
            case unknown
            case heldByAnother(AgentID?)
        }
        let claim: Claim = state.withLock { state in
            guard var live = state.open[taskID] else {
                if let row = state.recent[taskID] { return .finished(row) }
                return .unknown
            }
            guard live.durable else { return .pending }
            // Only the agent that holds the task may finish it (issue 12): a result from any
            // other would quarantine or skew the one that does the work.
            let holds = live.row.agentID == submission.agentID
            guard holds || live.formerHolders.contains(submission.agentID) else { return .heldByAnother(live.row.agentID) }
            let original = live
            live.row.state =
                switch submission.outcome {
                case .succeeded: .succeeded
                case .failed: .failed
                case .conflict: .conflict
                }
            live.row.agentID = submission.agentID
            live.row.finishedAtMs = wallMs
            // A former holder's time ran from a hand-out the lead already gave up on: it measures
            // no route, and counting it would blame or credit the current one.
            live.row.actualMs = holds ? live.routedAt.map { (now - $0).milliseconds } : nil
            live.row.result = submission.result
            live.row.error = submission.error
            // Claimed under the lock: a second result for the same task now finds it finished.
            state.open[taskID] = nil
            state.queued.removeAll { $0 == taskID }
            var heldSlot = false
            var refill = false
            if let agent = original.row.agentID {
                heldSlot = state.links[agent]?.inFlight.contains(taskID) == true
                // The freed slot is filled only once the result is committed: a result the
                // store refuses would otherwise hand the agent one more task at each retry.
                refill = release(task: taskID, from: agent, in: &state)
            }
            remember(live.row, in: &state)
            return .claimed(original, finished: live.row, heldSlot: heldSlot, refill: refill)
        }
        switch claim {
        case .unknown:
            if let row = try await Blocking.run({ [store] in try store.load(id: taskID) }) {
                if row.state.isTerminal {
                    state.withLock { $0.counters.duplicateResults += 1 }
                    return .alreadyFinished(view(of: row))
                }
                throw APIError(status: .serviceUnavailable, message: "task \(taskID) is being restored; retry")
            }
            throw APIError(status: .notFound, message: "no task with id \(taskID)", field: "id")
        case .pending:
            throw APIError(status: .serviceUnavailable, message: "task \(taskID) is not committed yet; retry")
        case .heldByAnother(let holder):
            throw APIError(
                status: .forbidden,
                // Which agent holds it is not the caller's to learn: it is another agent.
                message: "task \(taskID) is " + (holder == nil ? "not handed to any agent yet" : "held by another agent")
                    + "; only the agent that holds it may post its result",
                field: "agent_id")
        case .finished(let row):
            state.withLock { $0.counters.duplicateResults += 1 }
            return .alreadyFinished(view(of: row))
        case .claimed(let original, let finished, let heldSlot, let refill):
            var conflictRecord = submission.conflict.map {
                conflicts.record(agentID: submission.agentID, source: "task:\(taskID)", detail: $0, atMs: wallMs)
            }
            let conflictSeq = Mutex<Int64?>(nil)
            do {
                try await writer.write { [conflictRecord] connection in
                    try TaskStore.save(finished, in: connection)
                    if let conflictRecord {
                        let seq = try ConflictStore.append(conflictRecord, in: connection)
                        conflictSeq.withLock { $0 = seq }
                    }
                }
            } catch {
                // Not durable: put the task back as it was, so the agent's retry can finish it,
                // slot and all: the agent still has the task (its slot was not refilled yet).
                registry.recordUnstoredResult(of: submission.agentID, at: now)
                state.withLock { state in
                    var restored = original
                    restored.resultUnstored = original.row.agentID == submission.agentID
                    state.open[taskID] = restored
                    if heldSlot, let agent = original.row.agentID { state.links[agent]?.inFlight.insert(taskID) }
                    if original.row.state == .queued { state.queued.append(taskID) }
                    Self.forget(taskID, in: &state)
                    if let key = original.row.idempotencyKey { state.byKey[key] = taskID }
                    state.storedFinished -= 1
                }
                throw error
            }
            var writes: [TaskRow] = []
            state.withLock { state in
                state.counters.finished[finished.state, default: 0] += 1
                state.storedBytes += finished.storedBytes - original.row.storedBytes
                if refill, let agent = original.row.agentID { sendDatagrams(to: agent, now: now, in: &state, writes: &writes) }
            }
            persist(writes)
            if let seq = conflictSeq.withLock({ $0 }) { conflictRecord?.seq = seq }
            if let conflictRecord, conflicts.applied(conflictRecord) { requeueInbox(of: conflictRecord.agentID) }
            reportOutcome(finished)
            if let actual = finished.actualMs, let predicted = finished.predictedMs {
                let succeeded = finished.state == .succeeded
                registry.recordCompletion(
                    of: submission.agentID, at: now, totalMs: actual, predictedMs: predicted,
                    estimatedProcessingMs: original.estimatedProcessingMs ?? 0, succeeded: succeeded)
                kpis.recordArrival(
                    actualMs: actual, predictedMs: predicted,
                    inWindow: kpis.taskArrivedInWindow(actualMs: actual, leadTimeMs: original.row.leadTimeMs ?? predicted),
                    state: finished.state == .conflict ? .conflict : .ready)
                metrics.taskFinished(state: finished.state, after: .milliseconds(actual))
            } else {
                // No time to learn from (a late result from a former holder), but an answer all
                // the same: its breaker and its loop watchdog must see it, or a LOOP judged on
                // such an agent would never end.
                registry.recordOutcome(of: submission.agentID, at: now, succeeded: finished.state == .succeeded)
                metrics.taskFinished(state: finished.state, after: nil)
            }
            return .accepted(view(of: finished))
        }
    }

    // MARK: - Cancel

    @_optimize(size)  // cold: an operator's cancel (the 25 MB budget)
    func cancel(taskID: String) async throws -> TaskView {
        let wallMs = Clock.wallMilliseconds()
        let cancelled: TaskRow? = state.withLock { state in
            guard var live = state.open[taskID], live.durable else { return nil }
            live.row.state = .cancelled
            live.row.finishedAtMs = wallMs
            state.open[taskID] = nil
            state.queued.removeAll { $0 == taskID }
            if let agent = live.row.agentID {
                var writes: [TaskRow] = []
                freeSlot(of: agent, task: taskID, now: Clock.monotonicNow(), in: &state, writes: &writes)
                persist(writes)
            }
            remember(live.row, in: &state)
            state.counters.finished[.cancelled, default: 0] += 1
            return live.row
        }
        if let cancelled {
            try await writer.write { connection in try TaskStore.save(cancelled, in: connection) }
            metrics.taskFinished(state: .cancelled, after: nil)
            return view(of: cancelled)
        }
        guard let existing = try await task(id: taskID) else {
            throw APIError(status: .notFound, message: "no task with id \(taskID)", field: "id")
        }
        throw APIError(status: .conflict, message: "task \(taskID) is already \(existing.state); it cannot be cancelled")
    }

    // MARK: - Dispatch loop

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            // Event-driven: queued tasks are retried every dispatch interval (agents become READY
            // by heartbeat), a lease is looked at when it runs out, and with neither the loop sleeps.
            group.addTask {
                await runWhenDue(doorbell: self.doorbell) {
                    self.tick(now: Clock.monotonicNow())
                    return self.nextDue(now: Clock.monotonicNow())
                }
            }
            group.addTask {
                await runWhenDue(doorbell: self.retentionDoorbell) {
                    await self.prune()
                    return Clock.monotonicNow() + self.settings.retentionInterval
                }
            }
        }
    }

    /// When the loop has something to do next: nil when no task is queued or leased.
    func nextDue(now: Instant) -> Instant? {
        state.withLock { state in
            if !state.queued.isEmpty { return now + settings.dispatchInterval }
            let retransmission = state.linksAwaitingAck.compactMap { state.links[$0]?.outbox.nextDue }.min()
            // A lease not yet committed is not expired by the tick: look again a little later.
            let lease = state.open.values.compactMap { task in
                task.leaseExpires.map { task.durable ? $0 : max($0, now + settings.dispatchInterval) }
            }.min()
            return [lease, retransmission].compactMap { $0 }.min()
        }
    }

    /// Requeues expired leases, fails tasks out of attempts, and routes queued tasks.
    func tick(now: Instant) {
        var writes: [TaskRow] = []
        var failed: [TaskRow] = []
        var expired: [TaskRow] = []
        state.withLock { state in
            retransmit(now: now, in: &state)
            let wallMs = Clock.wallMilliseconds()
            var refill: Set<AgentID> = []
            for (id, live) in state.open where live.durable {
                guard let expires = live.leaseExpires, expires <= now else { continue }
                if live.resultUnstored {
                    // Its agent answered and the store had no room: the task stays with it for
                    // another lease while it retries (each refused retry marks it again), and
                    // no attempt is used up.
                    state.open[id]?.leaseExpires = now + lease
                    state.open[id]?.resultUnstored = false
                    continue
                }
                var task = live
                if let agent = task.row.agentID {
                    if release(task: id, from: agent, in: &state) { refill.insert(agent) }
                    task.takeBack(from: agent)
                    // Only a task the agent had is lost by it: one still waiting in its inbox
                    // (behind a full slot) goes back to the queue without blame, or a busy
                    // agent's breaker would open on work it never saw.
                    if task.row.state == .running { registry.recordLostTask(of: agent, at: now) }
                }
                task.leaseExpires = nil
                task.routedAt = nil
                if task.row.state == .running && task.row.attempts >= settings.maxAttempts {
                    task.giveUp("no result after \(task.row.attempts) attempts of \(Int(lease.milliseconds)) ms each", atMs: wallMs)
                    finish(task.row, in: &state)
                    failed.append(task.row)
                } else {
                    task.row.state = .queued
                    task.row.agentID = nil
                    state.open[id] = task
                    state.queued.append(id)
                    state.counters.requeued += 1
                }
                writes.append(task.row)
            }
            // After the loop: a refill hands out tasks whose entries the loop may still visit.
            for agent in refill { sendDatagrams(to: agent, now: now, in: &state, writes: &writes) }
            guard !state.queued.isEmpty else { return }
            var stillQueued: [String] = []
            let policy = health.policy
            for id in state.queued {
                guard var task = state.open[id], task.row.state == .queued else { continue }
                if TaskExpiry.isExpired(queuedSince: task.submittedAt, ttlMs: task.row.ttlMs, now: now) {
                    TaskExpiry.expire(&task.row, waited: now - task.submittedAt, nowMs: wallMs)
                    state.open[id] = nil
                    remember(task.row, in: &state)
                    state.counters.finished[task.row.state, default: 0] += 1
                    if task.row.state == .skipped { state.counters.skipped += 1 }
                    writes.append(task.row)
                    expired.append(task.row)
                    continue
                }
                // A task an agent already had (requeued after its lease, a restart or a failed
                // agent) was routed once: the level does not hold it back again.
                guard task.row.attempts > 0 || health.taskDisposition(priority: task.row.priority) == .route else {
                    if task.held == nil {
                        task.held = Self.heldReason(policy)
                        state.open[id] = task
                    }
                    stillQueued.append(id)
                    continue
                }
                task.held = nil
                let candidates = registry.candidates(capability: task.row.capability, at: now, outstanding: Self.outstanding(in: state))
                // Accepted already: no deadline can turn it away now, it waits for an agent instead.
                guard case .sendNow(let choice) = router.route(
                    candidates.map(\.route), payloadWeight: task.row.weight, deadlineMs: nil, now: now)
                else {
                    state.open[id] = task
                    stillQueued.append(id)
                    continue
                }
                assign(&task, to: choice, among: candidates, now: now)
                state.open[id] = task
                writes.append(task.row)
                deliver(Self.workItem(task.row), to: candidates[choice.index].id, in: &state)
            }
            state.queued = stillQueued
        }
        persist(writes)
        for row in failed {
            metrics.taskFinished(state: row.state, after: nil)
            reportOutcome(row)
        }
        for row in expired { metrics.taskFinished(state: row.state, after: nil) }
    }

    /// The lease of a task handed out now: longer while the node is degraded (seed LIGHT
    /// "increase retry timeouts").
    var lease: Duration {
        settings.lease * health.policy.retryTimeoutFactor
    }

    private static func heldReason(_ policy: DegradationPolicy) -> String {
        "the node is \(policy.level.rawValue): tasks below priority \(policy.minimumPriority) wait until it recovers"
    }

    /// A quarantined agent takes no new work: what waits in its inbox goes back to the queue.
    func requeueInbox(of agent: AgentID) {
        var writes: [TaskRow] = []
        state.withLock { state in
            guard let items = state.inboxes[agent]?.items else { return }
            state.inboxes[agent]?.items.removeAll { $0.kind == .task }
            for item in items where item.kind == .task {
                guard var task = state.open[item.id] else { continue }
                task.row.state = .queued
                task.row.agentID = nil
                task.leaseExpires = nil
                task.routedAt = nil
                state.open[item.id] = task
                state.queued.append(item.id)
                doorbell.ring()
                state.counters.requeued += 1
                writes.append(task.row)
            }
        }
        persist(writes)
    }

    // MARK: - Reading

    /// A task id from a unique prefix (IDPrefix): the live tasks, the recent ones and the store.
    func resolveTaskID(_ text: String) async throws -> IDPrefix.Resolution {
        let wanted = text.lowercased()
        guard wanted.count >= IDPrefix.minimumLength else { return .none }
        let known: [String] = state.withLock { state in
            state.open.keys.filter { $0.hasPrefix(wanted) } + state.recent.keys.filter { $0.hasPrefix(wanted) }
        }
        let stored = try await Blocking.run { [store] in try store.ids(withPrefix: wanted, limit: IDPrefix.shownCandidates + 1) }
        return IDPrefix.resolve(wanted, among: known + stored)
    }

    func task(id: String) async throws -> TaskView? {
        let inMemory: TaskView? = state.withLock { state in
            if let live = state.open[id], live.durable { return view(of: live) }
            return state.recent[id].map { view(of: $0) }
        }
        if let inMemory { return inMemory }
        return try await Blocking.run { [store] in try store.load(id: id) }.map { view(of: $0) }
    }

    /// A page of the newest tasks, with the lead's live copy over what SQLite has. Payloads and
    /// results are left out unless `payloads`.
    @_optimize(size)  // cold: an operator's listing (the 25 MB budget)
    func list(limit: Int, state filter: TaskState?, after cursor: TaskStore.Cursor?, payloads: Bool) async throws -> TaskList {
        let (rows, storedCounts) = try await Blocking.run { [store] in
            (try store.recent(limit: limit, state: filter, after: cursor), try store.countByState())
        }
        // Only the page's tasks become views: the RAM ring holds up to recentMaxBytes of
        // finished tasks, and a view of each, built under the lock at every list, held up every
        // submit and result for as long.
        let stored = Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let (pageViews, morePages, openStates, pruned) = state.withLock { state in
            var newest = rows.map { (submittedAtMs: $0.submittedAtMs, id: $0.id) }
            func add(_ row: TaskRow) {
                if stored[row.id] == nil && (filter == nil || row.state == filter!)
                    && (cursor?.precedes(submittedAtMs: row.submittedAtMs, id: row.id) ?? true)
                {
                    newest.append((row.submittedAtMs, row.id))
                }
            }
            for task in state.open.values where task.durable && state.recent[task.row.id] == nil { add(task.row) }
            for row in state.recent.values { add(row) }
            newest.sort { $0 > $1 }
            let page = newest.prefix(limit).map { key in
                // The lead's copy is newer than the store's.
                if let row = state.recent[key.id] { return view(of: row) }
                if let task = state.open[key.id], task.durable { return view(of: task) }
                return view(of: stored[key.id]!)
            }
            return (page, newest.count > limit || rows.count == limit, state.open.values.filter(\.durable).map(\.row.state), state.pruned)
        }
        var views = pageViews
        var more = morePages
        if !payloads {
            for index in views.indices {
                views[index].payload = nil
                views[index].result = nil
            }
        }
        let fitted = Paging.fit(views)
        more = more || fitted.cut
        var counts = storedCounts
        // Writes still in the group commit are not in SQLite yet: count the live states.
        for state in [TaskState.queued, .assigned, .running] { counts[state] = openStates.filter { $0 == state }.count }
        return TaskList(
            tasks: fitted.page,
            counts: Dictionary(uniqueKeysWithValues: TaskState.allCases.map { ($0.rawValue, counts[$0] ?? 0) }),
            nextCursor: more ? fitted.page.last.map { Self.cursorText(submittedAtMs: $0.submittedAtMs, id: $0.id) } : nil,
            pruned: pruned)
    }

    /// Cursors are opaque to clients: `<submitted ms>.<id>` of the last task of a page.
    static func cursorText(submittedAtMs: Int64, id: String) -> String {
        "\(submittedAtMs).\(id)"
    }

    static func cursor(_ text: String) -> TaskStore.Cursor? {
        guard let dot = text.firstIndex(of: "."), let ms = Int64(text[..<dot]), ms >= 0 else { return nil }
        let id = String(text[text.index(after: dot)...])
        guard !id.isEmpty, id.utf8.count <= 64 else { return nil }
        return TaskStore.Cursor(submittedAtMs: ms, id: id)
    }

    struct Snapshot: Sendable {
        var counters: Counters
        var open: [TaskState: Int]
        var outstanding: [AgentID: Int]
        var storedFinished: Int
        var storedBytes: Int
        var pruned: Int
        var workDatagrams: StatusReport.WorkDatagrams
        var longPolls: Int
    }

    /// Per agent, the tasks it works on, for the loop and hang watchdogs: those whose result
    /// waits for room in the store are done as far as the agent goes (counted, an agent
    /// retrying that result would be judged LOOP for completing nothing). Routing still counts
    /// them: the agent's worker is busy retrying.
    var workingByAgent: [AgentID: Int] {
        state.withLock { state in
            var result: [AgentID: Int] = [:]
            for task in state.open.values where (task.row.state == .assigned || task.row.state == .running) && !task.resultUnstored {
                if let agent = task.row.agentID { result[agent, default: 0] += 1 }
            }
            return result
        }
    }

    var snapshot: Snapshot {
        state.withLock { state in
            var open: [TaskState: Int] = [:]
            for task in state.open.values where task.durable { open[task.row.state, default: 0] += 1 }
            return Snapshot(
                counters: state.counters, open: open, outstanding: Self.outstanding(in: state), storedFinished: state.storedFinished,
                storedBytes: state.storedBytes, pruned: state.pruned, workDatagrams: state.datagramCounters(links: state.links.count),
                longPolls: state.inboxes.values.filter { $0.waiter != nil }.count)
        }
    }

    // MARK: - Helpers

    /// Records the router's choice on the task: its agent, the prediction the KPIs judge, the lease.
    private func assign(_ task: inout LiveTask, to choice: TaskRouter.Choice, among candidates: [AgentRegistry.Candidate], now: Instant) {
        let chosen = candidates[choice.index]
        registry.recordDispatch(to: chosen.id, at: now)
        task.row.state = .assigned
        task.row.agentID = chosen.id
        // The router predicts when the agent is done (seed 001's arrival); the lead sees the
        // result one more one-way trip later, and that is what `actual_ms` measures.
        task.row.predictedMs = choice.predictedArrivalMs + chosen.route.latencyMs
        task.row.leadTimeMs = choice.leadTimeMs + chosen.route.latencyMs
        task.routedAt = now
        task.estimatedProcessingMs = chosen.route.agentClass.estimateProcessingMs(
            payloadWeight: task.row.weight, queueDepth: chosen.route.queueDepth)
        task.leaseExpires = now + lease
        doorbell.ring()
        task.candidates = candidates.count
        task.runnerUp = choice.runnerUp.map {
            TaskView.RunnerUp(
                agentName: candidates[$0.index].name, predictedArrivalMs: ImpedanceView.round($0.predictedArrivalMs),
                costMs: ImpedanceView.round($0.costMs))
        }
        task.costMs = ImpedanceView.round(choice.costMs)
        task.routing = choice.why
    }

    private static func outstanding(in state: State) -> [AgentID: Int] {
        var result: [AgentID: Int] = [:]
        for task in state.open.values where task.row.state == .assigned || task.row.state == .running {
            if let agent = task.row.agentID { result[agent, default: 0] += 1 }
        }
        return result
    }

    /// A task ended without a result (out of attempts): out of the open ones, counted.
    func finish(_ row: TaskRow, in state: inout State) {
        state.open[row.id] = nil
        remember(row, in: &state)
        state.counters.finished[row.state, default: 0] += 1
    }

    /// A task just finished: kept in RAM while the ring's bytes allow, counted for retention.
    func remember(_ row: TaskRow, in state: inout State) {
        Self.forget(row.id, in: &state)
        if let key = row.idempotencyKey { state.byKey[key] = row.id }
        state.recent[row.id] = row
        state.recentOrder.append(row.id)
        state.recentBytes += row.storedBytes
        while state.recentBytes > settings.recentMaxBytes && state.recentHead < state.recentOrder.count - 1 {
            let evicted = state.recentOrder[state.recentHead]
            state.recentHead += 1
            if evicted != row.id { Self.forget(evicted, in: &state) }
        }
        // Ids pruned or finished again stay in the order until reached; rebuild it when they
        // outnumber the live ones, so that the order is bounded by the ring too.
        if state.recentOrder.count - state.recentHead > 2 * state.recent.count + 1024 {
            var seen = Set<String>()
            let live = state.recentOrder[state.recentHead...].reversed().filter { id in
                state.recent[id] != nil && seen.insert(id).inserted
            }
            state.recentOrder = live.reversed()
            state.recentHead = 0
        } else if state.recentHead > 1024 && state.recentHead * 2 > state.recentOrder.count {
            state.recentOrder.removeFirst(state.recentHead)
            state.recentHead = 0
        }
        state.storedFinished += 1
        let retention = settings.retention
        if state.storedFinished > retention.maxFinished + settings.pruneBatch || state.storedBytes > retention.maxBytes {
            retentionDoorbell.ring()
        }
    }

    /// Drops a finished task from the RAM ring (its order entry is skipped when reached).
    private static func forget(_ id: String, in state: inout State) {
        guard let row = state.recent.removeValue(forKey: id) else { return }
        state.recentBytes -= row.storedBytes
        if let key = row.idempotencyKey, state.byKey[key] == id { state.byKey[key] = nil }
    }

    static func workItem(_ row: TaskRow) -> WorkItem {
        WorkItem(kind: .task, id: row.id, capability: row.capability, payload: row.payload, weight: row.weight, attempt: row.attempts + 1)
    }

    private func view(of live: LiveTask) -> TaskView {
        var view = view(of: live.row)
        view.runnerUp = live.runnerUp
        view.costMs = live.costMs
        view.routing = live.routing
        if let held = live.held, live.row.state == .queued {
            view.decision = "WAIT"
            view.waitReason = held
        }
        view.candidates = live.candidates
        return view
    }

    func view(of row: TaskRow) -> TaskView {
        var view = TaskView(
            id: row.id, idempotencyKey: row.idempotencyKey, capability: row.capability, payload: row.payload, weight: row.weight,
            deadlineMs: row.deadlineMs, state: row.state.rawValue, decision: row.state == .skipped ? "SKIP" : "SEND_NOW",
            skipReason: row.skipReason, skipCode: row.state == .skipped ? row.error : nil, agentID: row.agentID?.description,
            agentName: row.agentID.flatMap { registry.name(of: $0) }, attempts: row.attempts,
            predictedArrivalMs: row.predictedMs.map(ImpedanceView.round), leadTimeMs: row.leadTimeMs.map(ImpedanceView.round), runnerUp: nil, candidates: nil,
            submittedAtMs: row.submittedAtMs, finishedAtMs: row.finishedAtMs, actualMs: row.actualMs.map(ImpedanceView.round),
            result: row.result, error: row.state == .skipped ? nil : row.error, priority: row.priority)
        view.ttlMs = row.ttlMs
        return view
    }
}
