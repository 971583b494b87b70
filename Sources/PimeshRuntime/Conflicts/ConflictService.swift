import Logging
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore
import PimeshSystem
import Synchronization

/// Seed 001 §5.1 `ConflictHandler`: classifies CONFLICT answers, appends them to the log and
/// quarantines agents whose conflicts are critical. Operators release them.
final class ConflictService: Sendable {
    let registry: AgentRegistry
    let writer: StoreWriter
    let store: ConflictStore
    let metrics: LeadMetrics
    let logger: Logger
    private let policy = ConflictPolicy()
    /// Unresolved conflicts with a resolution time, newest last: what the incident triggers
    /// time (seed 001 §5.1). Bounded: past `maxTracked` the oldest of the lowest priority is
    /// no longer timed here (it stays in the log, unresolved, and `pimesh conflicts` shows it),
    /// so that a burst of minor conflicts never hides a critical one.
    /// Each with when it was recorded on the monotonic clock, which its deadline runs on
    /// (`WallAge`): a wall clock stepped forward made every conflict overdue at once.
    private let unresolved = Mutex<[(record: ConflictRecord, since: Instant)]>([])
    static let maxTracked = 256

    init(registry: AgentRegistry, writer: StoreWriter, store: ConflictStore, metrics: LeadMetrics, logger: Logger) {
        self.registry = registry
        self.writer = writer
        self.store = store
        self.metrics = metrics
        self.logger = logger
    }

    /// Quarantines survive restarts.
    /// `nowWallMs`: the wall clock as stored times read it (Lead: without a step made while no
    /// lead ran).
    func restore(nowWallMs: Int64 = Clock.wallMilliseconds()) throws {
        for quarantine in try store.quarantines() {
            registry.setQuarantined(quarantine.agentID, true)
        }
        let open = try store.unresolved(limit: Self.maxTracked)
        let now = Clock.monotonicNow()
        unresolved.withLock { $0 = open.reversed().map { ($0, WallAge.instant(ofWallMs: $0.atMs, nowWallMs: nowWallMs, now: now)) } }
    }

    /// For the incident triggers: each unresolved conflict with its age now.
    func unresolvedConflicts(at now: Instant) -> [UnresolvedConflict] {
        unresolved.withLock { $0 }.map { tracked in
            let record = tracked.record
            return UnresolvedConflict(
                seq: record.seq, agent: registry.name(of: record.agentID) ?? record.agentID.description, priority: record.priority,
                type: record.type.rawValue, ageMs: (now - tracked.since).wholeNanoseconds / 1_000_000)
        }
    }

    /// The log entry for a conflict; the caller commits it with whatever else it writes.
    func record(agentID: AgentID, source: String, detail: ConflictDetail, atMs: Int64) -> ConflictRecord {
        let classification = policy.classify(detail)
        return ConflictRecord(
            atMs: atMs, agentID: agentID, source: source, type: detail.type, priority: classification.priority,
            strategy: classification.strategy, expected: detail.expected, received: detail.received, contextHash: detail.contextHash,
            quarantined: classification.quarantinesAgent)
    }

    /// After the record is committed: quarantines in RAM too. Returns whether the agent was quarantined.
    func applied(_ record: ConflictRecord) -> Bool {
        metrics.conflictRecorded(record.type)
        if ConflictPolicy.resolveWithin(priority: record.priority) != nil {
            let now = Clock.monotonicNow()
            unresolved.withLock { open in
                open.append((record, now))
                while let index = ConflictPolicy.untrackedIndex(priorities: open.map(\.record.priority), maxTracked: Self.maxTracked) {
                    open.remove(at: index)
                }
            }
        }
        let name = registry.name(of: record.agentID) ?? record.agentID.description
        if record.quarantined {
            registry.setQuarantined(record.agentID, true)
            logger.warning(
                "agent quarantined after a critical conflict; release it with `pimesh conflicts release \(name)`",
                metadata: ["agent": "\(name)", "type": "\(record.type.rawValue)", "source": "\(record.source)"])
        } else if record.priority >= 3 {
            logger.warning(
                "high-priority conflict", metadata: ["agent": "\(name)", "type": "\(record.type.rawValue)", "priority": "\(record.priority)"])
        }
        return record.quarantined
    }

    @_optimize(size)  // cold: a quarantine (the 25 MB budget)
    func quarantine(_ agentID: AgentID, reason: String) async throws {
        let quarantine = Quarantine(agentID: agentID, sinceMs: Clock.wallMilliseconds(), conflictSeq: nil, reason: reason)
        try await writer.write { connection in try ConflictStore.quarantine(quarantine, in: connection) }
        registry.setQuarantined(agentID, true)
    }

    func release(_ agentID: AgentID, actor: String) async throws {
        let atMs = Clock.wallMilliseconds()
        try await writer.write { connection in try ConflictStore.release(agentID, atMs: atMs, actor: actor, in: connection) }
        registry.setQuarantined(agentID, false)
        let resolved = Set(try await Blocking.run { [store] in try store.resolutions(of: self.trackedSeqs()) }.keys)
        unresolved.withLock { $0.removeAll { resolved.contains($0.record.seq) } }
    }

    private func trackedSeqs() -> [Int64] {
        unresolved.withLock { $0.map(\.record.seq) }
    }

    enum ResolveOutcome {
        case resolved(ConflictRecord)
        case alreadyResolved(ConflictResolution)
    }

    /// An operator's resolution of one logged conflict (seed 001 §5.1's resolution queue).
    func resolve(seq: Int64, actor: String, note: String) async throws -> ResolveOutcome {
        let record = try await Blocking.run { [store] in try store.record(seq: seq) }
        guard let record else { throw APIError(status: .notFound, message: "no conflict #\(seq) in the log", field: "seq") }
        let resolution = ConflictResolution(seq: seq, atMs: Clock.wallMilliseconds(), actor: actor, note: note)
        // The insert decides, not an earlier read: of two concurrent resolutions one wins.
        let inserted = Mutex(false)
        try await writer.write { connection in
            let fresh = try ConflictStore.resolve(resolution, in: connection)
            inserted.withLock { $0 = fresh }
        }
        guard inserted.withLock({ $0 }) else {
            let existing = try await Blocking.run { [store] in try store.resolutions(of: [seq])[seq] }
            return .alreadyResolved(existing ?? resolution)
        }
        unresolved.withLock { $0.removeAll { $0.record.seq == seq } }
        return .resolved(record)
    }

    /// A page of the newest entries, those before `before` when given.
    @_optimize(size)  // cold: an operator's listing (the 25 MB budget)
    func list(limit: Int, before: Int64? = nil) async throws -> ConflictList {
        let (records, quarantines, total, resolutions) = try await Blocking.run { [store] in
            // Past a page of evidence the API would cut the list anyway (it sets the cursor).
            let records = try store.recent(limit: limit, before: before, maxBytes: Paging.maxPageBytes)
            return (records, try store.quarantines(), try store.count(), try store.resolutions(of: records.map(\.seq)))
        }
        let nowMs = Clock.wallMilliseconds()
        let now = Clock.monotonicNow()
        let trackedSince = Dictionary(unresolved.withLock { $0 }.map { ($0.record.seq, $0.since) }, uniquingKeysWith: { first, _ in first })
        let entries = records.map { record in
            var entry = ConflictList.Entry(
                seq: record.seq, atMs: record.atMs, agentID: record.agentID.description, agentName: registry.name(of: record.agentID),
                source: record.source, type: record.type.rawValue, priority: record.priority, strategy: record.strategy,
                expected: record.expected, received: record.received, contextHash: record.contextHash, quarantined: record.quarantined)
            let within = ConflictPolicy.resolveWithin(priority: record.priority)
            entry.escalation = ConflictEscalation(priority: record.priority).rawValue
            if let resolution = resolutions[record.seq] {
                entry.resolveByMs = within.map { record.atMs + Int64($0.milliseconds) }
                entry.resolvedAtMs = resolution.atMs
                entry.resolvedBy = resolution.actor
                entry.resolution = resolution.note
            } else {
                // The age the incident triggers use, and the deadline on today's wall clock.
                let since = trackedSince[record.seq] ?? WallAge.instant(ofWallMs: record.atMs, nowWallMs: nowMs, now: now)
                let ageMs = (now - since).wholeNanoseconds / 1_000_000
                // Its own time unless the wall clock stepped since: then when it was recorded
                // by today's wall clock.
                let recordedMs = abs(nowMs - ageMs - record.atMs) > 1_000 ? nowMs - ageMs : record.atMs
                entry.resolveByMs = within.map { recordedMs + Int64($0.milliseconds) }
                entry.overdue = ConflictPolicy.isOverdue(priority: record.priority, ageMs: ageMs)
            }
            return entry
        }
        let quarantined = quarantines.map {
            ConflictList.QuarantinedAgent(
                agentID: $0.agentID.description, agentName: registry.name(of: $0.agentID), sinceMs: $0.sinceMs, reason: $0.reason)
        }
        let fitted = Paging.fit(entries)
        var list = ConflictList(conflicts: fitted.page, total: total, quarantined: quarantined)
        if fitted.cut || (records.count == limit && records.last.map({ $0.seq > 1 }) ?? false) {
            list.nextCursor = fitted.page.last.map { String($0.seq) }
        }
        return list
    }
}
