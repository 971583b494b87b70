import Logging
import PimeshAgent
import PimeshCore
import PimeshStore

/// Seed 001 §5.1 `ConflictHandler`: classifies CONFLICT answers, appends them to the log and
/// quarantines agents whose conflicts are critical. Operators release them.
final class ConflictService: Sendable {
    let registry: AgentRegistry
    let writer: StoreWriter
    let store: ConflictStore
    let metrics: LeadMetrics
    let logger: Logger
    private let policy = ConflictPolicy()

    init(registry: AgentRegistry, writer: StoreWriter, store: ConflictStore, metrics: LeadMetrics, logger: Logger) {
        self.registry = registry
        self.writer = writer
        self.store = store
        self.metrics = metrics
        self.logger = logger
    }

    /// Quarantines survive restarts.
    func restore() throws {
        for quarantine in try store.quarantines() {
            registry.setQuarantined(quarantine.agentID, true)
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

    func quarantine(_ agentID: AgentID, reason: String) async throws {
        let quarantine = Quarantine(agentID: agentID, sinceMs: Clock.wallMilliseconds(), conflictSeq: nil, reason: reason)
        try await writer.write { connection in try ConflictStore.quarantine(quarantine, in: connection) }
        registry.setQuarantined(agentID, true)
    }

    func release(_ agentID: AgentID) async throws {
        try await writer.write { connection in try ConflictStore.release(agentID, in: connection) }
        registry.setQuarantined(agentID, false)
    }

    /// A page of the newest entries, those before `before` when given.
    func list(limit: Int, before: Int64? = nil) async throws -> ConflictList {
        let (records, quarantines, total) = try await Blocking.run { [store] in
            (try store.recent(limit: limit, before: before), try store.quarantines(), try store.count())
        }
        let entries = records.map { record in
            ConflictList.Entry(
                seq: record.seq, atMs: record.atMs, agentID: record.agentID.description, agentName: registry.name(of: record.agentID),
                source: record.source, type: record.type.rawValue, priority: record.priority, strategy: record.strategy,
                expected: record.expected, received: record.received, contextHash: record.contextHash, quarantined: record.quarantined)
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
