import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// The node's degradation level and what feeds it, as the health tick last judged it. Task
/// submission reads it to shed; status and the LEDs read it to show it.
final class NodeHealth: Sendable {
    struct Snapshot: Sendable {
        var level: DegradationLevel = .full
        var memoryOverBudget = false
        var agentsMemoryBytes: UInt64?
        var ramBudgetBytes: UInt64?
    }

    private let state = Mutex(Snapshot())
    private let clockStep = Mutex<Instant?>(nil)

    /// When the wall clock last stepped (ClockStepDetector): root-cause evidence.
    var clockSteppedAt: Instant? {
        get { clockStep.withLock { $0 } }
        set { clockStep.withLock { $0 = newValue } }
    }
    private let tierTimes = Mutex(TierResponseTimes())

    /// A healing step of `tier`, due at `due`, carried out at `done`.
    func recordStep(_ tier: AuthorityTier, due: Instant, done: Instant) {
        let ms = (done - due).milliseconds
        tierTimes.withLock { $0.record(tier, tookMs: ms) }
    }

    var tierSummaries: [TierResponseTimes.Summary] {
        tierTimes.withLock { $0.summaries }
    }
    /// Incidents whose playbook ran `shed_load`: until each is mitigated, new tasks below
    /// MODERATE's minimum priority are shed whatever the level.
    private let shedding = Mutex<Set<Int64>>([])

    func shed(for incident: Int64, _ on: Bool) {
        shedding.withLock { if on { $0.insert(incident) } else { $0.remove(incident) } }
    }

    var sheddingIncidents: Set<Int64> {
        shedding.withLock { $0 }
    }

    /// Below this priority a task is shed: the level's, or MODERATE's routing minimum while a
    /// playbook sheds load (`shed_load` sheds, it does not queue).
    var shedBelowPriority: Int {
        let level = policy.shedBelowPriority
        return shedding.withLock { $0.isEmpty } ? level : max(level, DegradationPolicy(level: .moderate).minimumPriority)
    }

    /// What a task of `priority` gets now: routed, queued until the level allows it, or shed.
    func taskDisposition(priority: Int) -> DegradationPolicy.TaskDisposition {
        priority < shedBelowPriority ? .shed : policy.disposition(priority: priority)
    }

    var snapshot: Snapshot {
        state.withLock { $0 }
    }

    var level: DegradationLevel {
        state.withLock { $0.level }
    }

    var policy: DegradationPolicy {
        DegradationPolicy(level: level)
    }

    /// Returns the previous level when it changed.
    func update(_ change: (inout Snapshot) -> Void) -> DegradationLevel? {
        state.withLock { state in
            let before = state.level
            change(&state)
            return state.level == before ? nil : before
        }
    }
}

/// The lead's health event log: a bounded ring in RAM, read by `pimesh events` and the
/// benchmark. Every event, coalesced here or not, is also a row of the durable audit log.
final class HealthEventLog: Sendable {
    private struct State {
        var events: [HealthEvent] = []
        var next: UInt64 = 1
    }

    private let capacity: Int
    private let state = Mutex(State())
    /// How far back an identical event is looked for.
    static let coalesceWindow = 16

    private let audit: AuditLog?
    /// Told of every event after it is kept: the incident engine's timelines.
    private let observer = Mutex<Callback<@Sendable (_ kind: String, _ agent: String?, _ detail: String, _ atMs: Int64) -> Void>?>(nil)

    init(capacity: Int = 2048, audit: AuditLog? = nil) {
        self.capacity = capacity
        self.audit = audit
    }

    func observe(_ body: @escaping @Sendable (_ kind: String, _ agent: String?, _ detail: String, _ atMs: Int64) -> Void) {
        observer.withLock { $0 = Callback(body) }
    }

    @discardableResult
    func append(kind: String, agent: String?, detail: String, atMs: Int64 = Clock.wallMilliseconds(), tier: AuthorityTier? = nil)
        -> HealthEvent
    {
        if let audit {
            var details = [("detail", detail)]
            if let tier { details.append(("tier", tier.rawValue)) }
            let row = AuditEntry(actor: "lead", kind: kind, subject: agent ?? "node", body: AuditBody.canonical(details))
            if AuditPace.paces(kind: kind) { audit.recordPaced(row) } else { audit.record(row) }
        }
        defer { observer.withLock { $0 }?.call(kind, agent, detail, atMs) }
        return state.withLock { state in
            // The same event again as this agent's (or the node's) latest among the last few:
            // counted on the one already kept. Only the latest, so that an agent's history never
            // reads out of order (alive, exited, unknown, then alive again must end in alive).
            if let index = state.events.indices.suffix(Self.coalesceWindow).last(where: { state.events[$0].agent == agent }),
                state.events[index].kind == kind, state.events[index].detail == detail, state.events[index].tier == tier?.rawValue
            {
                state.events[index].count = (state.events[index].count ?? 1) + 1
                state.events[index].lastAtMs = atMs
                return state.events[index]
            }
            let event = HealthEvent(sequence: state.next, atMs: atMs, kind: kind, agent: agent, detail: detail, tier: tier?.rawValue)
            state.next += 1
            state.events.append(event)
            if state.events.count > capacity { state.events.removeFirst(state.events.count - capacity) }
            return event
        }
    }

    /// The sequence of the newest event kept (0 before the first).
    var newestSequence: UInt64 {
        state.withLock { $0.next - 1 }
    }

    func list(since: UInt64, limit: Int) -> HealthEventList {
        state.withLock { state in
            let newer = state.events.filter { $0.sequence > since }
            let page = Array(newer.prefix(limit))
            return HealthEventList(events: page, next: page.last?.sequence ?? max(since, state.next - 1))
        }
    }
}
