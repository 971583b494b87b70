import CSpawn
import Crypto
import Glibc
import Logging
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshSnapshot
import PimeshStore
import PimeshSystem
import Synchronization

/// The lead's audit log (docs/audit.md): chains each entry onto the last (the rule is
/// `PimeshCore.AuditChain`) inside the store writer's transaction, on its thread, so rows are
/// chained in the order they are committed; the tip moves on only when the batch commits, so a
/// failed commit never leaves a gap.
///
/// Rows about automatic actions wait in `pending` (in the order they were recorded) until a
/// write appends them; a batch that fails (a full disk) puts its rows back at the front, and they
/// go with the next row recorded or after the next batch that commits. Past `pendingLimit` rows the newest are
/// counted in an `audit.rows_lost` row instead: a gap is never silent.
///
/// Rows about automatic actions ride the writer's group commit (`record`); an operator's action
/// waits until its intent row is durable before it acts (`intent`), so a crash in between
/// leaves the evidence. Every `headEveryRows` rows, and at every snapshot, the node key signs
/// the chain's tip.
public final class AuditLog: Sendable {
    /// An intent row, for the outcome row to point at.
    public struct Intent: Sendable {
        public var seq: Int64
        var entry: AuditEntry
    }

    struct Chain {
        /// As of the last batch that committed.
        var tip: AuditTip
        var newestHead: AuditHead?
        /// Moved by the writes of the batch being committed.
        var working: AuditTip
        var workingHead: AuditHead?
        /// Automatic rows not appended yet, oldest first; those appended in the batch being
        /// committed; and how many did not fit in `pendingLimit`.
        var pending: [AuditEntry] = []
        var attempted: [AuditEntry] = []
        var dropped = 0
        /// What the running write took from `pending`: back to it if the write fails.
        var taken: [AuditEntry] = []
        var takenDropped = 0
        /// A write of the batch being committed failed (its rows went back to `pending`): no
        /// retry right after it, or a full disk would have the writer spin.
        var writeFailed = false
        /// A flush is queued: another after a batch would only add an empty savepoint.
        var flushQueued = false

        /// Rows back to the front of `pending`, past `pendingLimit` counted instead.
        mutating func wait(again rows: [AuditEntry], dropped: Int) {
            let waiting = rows + pending
            pending = Array(waiting.prefix(AuditLog.pendingLimit))
            self.dropped += dropped + waiting.count - pending.count
        }
    }

    /// Every flush appends whatever is pending: of flushes waiting for a failing store, one will do.
    static let flushKey = "audit-pending"

    /// Automatic rows kept while the store cannot commit: a busy lead's day is far fewer.
    static let pendingLimit = 4096

    private let writer: StoreWriter
    private let key: NodeKey
    private let bootID: String
    private let headEveryRows: Int64
    private let clock: SystemClockStatus
    private let logger: Logger
    private let chain: Mutex<Chain>
    private let pace = Mutex(AuditPace())
    /// What the last retention check counted: summing the rows' sizes reads the whole table,
    /// so it is done hourly, not at every status call.
    private let lastCheck = Mutex<(bytes: Int64, prunedThrough: Int64?, upstream: Int64, upstreamOnly: Bool)>((0, nil, 0, true))

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: bytes))
    }

    /// Reads the chain's tip from the database and, on a new database, writes the genesis row
    /// naming the node key. Runs before the store writer starts, so it writes directly.
    public static func open(writer: StoreWriter, key: NodeKey, headEveryRows: Int64, logger: Logger) throws -> AuditLog {
        let store = AuditStore(database: writer.database)
        var tip = try store.tip()
        if tip.seq == 0 {
            let genesis = tip.append(
                AuditEntry(
                    actor: "lead", kind: AuditChain.genesisKind, subject: key.nodeID,
                    body: AuditBody.canonical(["node_key": key.publicKeyHex, "node_id": key.nodeID])),
                wallMs: Clock.wallMilliseconds(), monoMs: Clock.monotonicNow().nanoseconds / 1_000_000, bootID: SystemClockStatus.bootID(),
                clockSynced: SystemClockStatus().isSynchronized, hash: sha256)
            try writer.database.transaction { try AuditStore.append(genesis, in: $0) }
        }
        return AuditLog(writer: writer, key: key, tip: tip, newestHead: try store.newestHead(), headEveryRows: headEveryRows, logger: logger)
    }

    private init(writer: StoreWriter, key: NodeKey, tip: AuditTip, newestHead: AuditHead?, headEveryRows: Int64, logger: Logger) {
        self.writer = writer
        self.key = key
        self.bootID = SystemClockStatus.bootID()
        self.headEveryRows = headEveryRows
        self.clock = SystemClockStatus()
        self.logger = logger
        self.chain = Mutex(Chain(tip: tip, newestHead: newestHead, working: tip, workingHead: newestHead))
        writer.onBatchEnd { [weak self] committed, _ in self?.batchEnded(committed: committed) }
    }

    private func batchEnded(committed: Bool) {
        let flush = chain.withLock { chain -> Bool in
            defer { (chain.attempted, chain.writeFailed) = ([], false) }
            if committed {
                chain.tip = chain.working
                chain.newestHead = chain.workingHead
                let flush = !chain.writeFailed && !chain.flushQueued && (!chain.pending.isEmpty || chain.dropped > 0)
                if flush { chain.flushQueued = true }
                return flush
            }
            chain.working = chain.tip
            chain.workingHead = chain.newestHead
            chain.wait(again: chain.attempted, dropped: 0)
            return false
        }
        // Only after a batch in which nothing failed: retrying after a failure would spin on a
        // full disk. Rows left waiting with no new row to carry them go with a write of their own.
        if flush { enqueueFlush() }
    }

    private func enqueueFlush() {
        writer.enqueue(key: Self.flushKey, chained { [self] connection in try appendPending(in: connection) })
    }

    /// A write's rows go with its savepoint: when it throws, SQLite rolls them back and the
    /// chain forgets them too (the automatic ones wait again), or the next row would chain onto
    /// a hash that is not stored. Only what this write changed is undone: rows recorded on
    /// other threads meanwhile stay in `pending`.
    private func chained(_ body: @escaping @Sendable (Connection) throws -> Void) -> StoreWriter.Write {
        { [self] connection in
            let before = chain.withLock { chain in
                (chain.taken, chain.takenDropped) = ([], 0)
                return (working: chain.working, head: chain.workingHead, attempted: chain.attempted.count)
            }
            do {
                try body(connection)
            } catch {
                chain.withLock { chain in
                    chain.working = before.working
                    chain.workingHead = before.head
                    chain.attempted.removeLast(chain.attempted.count - before.attempted)
                    chain.wait(again: chain.taken, dropped: chain.takenDropped)
                    (chain.taken, chain.takenDropped) = ([], 0)
                    chain.writeFailed = true
                }
                throw error
            }
        }
    }

    /// Appends the automatic rows waiting, oldest first, and counts those that did not fit.
    private func appendPending(in connection: Connection) throws {
        let (rows, dropped) = chain.withLock { chain in
            defer { (chain.pending, chain.dropped, chain.flushQueued) = ([], 0, false) }
            (chain.taken, chain.takenDropped) = (chain.pending, chain.dropped)
            return (chain.pending, chain.dropped)
        }
        for row in rows { _ = try append(row, in: connection, automatic: true) }
        if dropped > 0 {
            let lost = AuditEntry(
                actor: "lead", kind: "audit.rows_lost", subject: "store",
                body: AuditBody.canonical([("rows", String(dropped)), ("why", "store commits failed; \(Self.pendingLimit) rows were kept")]))
            _ = try append(lost, in: connection, automatic: true)
        }
    }

    public var tip: AuditTip {
        chain.withLock { $0.tip }
    }

    public var newestHead: AuditHead? {
        chain.withLock { $0.newestHead }
    }

    public var nodeKey: NodeKey { key }

    /// Appends a row that rides the next group commit.
    public func record(_ entry: AuditEntry) {
        chain.withLock { chain in
            if chain.pending.count < Self.pendingLimit { chain.pending.append(entry) } else { chain.dropped += 1 }
            chain.flushQueued = true
        }
        enqueueFlush()
    }

    /// Appends a row the lead writes by itself, at the pace `AuditPace` allows; what is held
    /// back is counted in an `audit.rows_coalesced` row at most once a minute.
    public func recordPaced(_ entry: AuditEntry) {
        let now = Clock.monotonicNow()
        let (admitted, summary) = pace.withLock { pace in (pace.admit(subject: entry.subject, at: now), pace.summary(at: now)) }
        if let summary { record(Self.coalesced(summary)) }
        if admitted { record(entry) }
    }

    /// What the pace held back, said once a minute has passed since the first of it (`now`: at
    /// once, when the lead stops); run every minute, so that a flood that stopped is said too.
    public func flushPaced(now: Bool = false) {
        if let summary = pace.withLock({ $0.summary(at: Clock.monotonicNow(), now: now) }) { record(Self.coalesced(summary)) }
    }

    @_optimize(size)  // cold: only while agents flood the log (the 25 MB budget)
    private static func coalesced(_ summary: AuditPace.Summary) -> AuditEntry {
        AuditEntry(
            actor: "lead", kind: "audit.rows_coalesced", subject: "lead",
            body: AuditBody.canonical([
                ("rows", String(summary.rows)), ("subjects", String(summary.subjects)),
                ("most", summary.top.map { "\($0.subject):\($0.rows)" }.joined(separator: ",")),
                ("why", "written faster than the audit log's pace (docs/audit.md)"),
            ]))
    }

    /// Appends a row and runs `alongside` in the same transaction: the row and the change it
    /// reports commit together or not at all (the row never waits for a retry without it).
    public func record(_ entry: AuditEntry, alongside: @escaping @Sendable (Connection) throws -> Void) {
        writer.enqueue(
            chained { [self] connection in
                try appendPending(in: connection)
                _ = try append(entry, in: connection, automatic: false)
                try alongside(connection)
            })
    }

    /// Appends a row and returns its seq once it is durable (`synchronous=FULL`): the waiter is
    /// the row's own write, so a row that failed is never reported durable (nor retried: its
    /// caller learns of the failure).
    @discardableResult
    public func recordDurably(_ entry: AuditEntry) async throws -> Int64 {
        let seq = Mutex<Int64>(0)
        try await writer.write(
            chained { [self] connection in
                try appendPending(in: connection)
                let record = try append(entry, in: connection, automatic: false)
                seq.withLock { $0 = record.seq }
            })
        return seq.withLock { $0 }
    }

    /// Runs on the writer's thread, inside its transaction. Times are taken here, so that they
    /// never go backwards as seq goes up (at most one commit interval after the event, or, for
    /// rows that waited for a failing store, when it had room again).
    private func append(_ entry: AuditEntry, in connection: Connection, automatic: Bool) throws -> AuditRecord {
        let wallMs = Clock.wallMilliseconds()
        var tip = chain.withLock { $0.working }
        let record = tip.append(
            entry, wallMs: wallMs, monoMs: Clock.monotonicNow().nanoseconds / 1_000_000, bootID: bootID,
            clockSynced: clock.isSynchronized, hash: Self.sha256)
        let head = AuditHeadPolicy.signsHead(after: record.seq, everyRows: headEveryRows) ? sign(record.seq, record.sha256, atMs: wallMs) : nil
        try AuditStore.append(record, in: connection)
        if let head { try AuditStore.appendHead(head, in: connection) }
        chain.withLock { chain in
            chain.working = tip
            if let head { chain.workingHead = head }
            if automatic { chain.attempted.append(entry) }
        }
        return record
    }

    /// The durable row an action writes before it acts.
    public func intent(actor: String, kind: String, subject: String, details: [(String, String)] = []) async throws -> Intent {
        let entry = AuditEntry(actor: actor, kind: kind, subject: subject, body: AuditBody.canonical([("phase", "intent")] + details))
        return Intent(seq: try await recordDurably(entry), entry: entry)
    }

    /// The row after the action: `result` is `ok`, `refused` or `failed`. Made durable before it
    /// returns, so that an answer to the operator means both rows are on disk.
    public func outcome(_ intent: Intent, result: String, details: [(String, String)] = []) async {
        let entry = AuditEntry(
            actor: intent.entry.actor, kind: intent.entry.kind, subject: intent.entry.subject,
            body: AuditBody.canonical([("phase", "outcome"), ("intent", String(intent.seq)), ("result", result)] + details))
        do {
            try await recordDurably(entry)
        } catch {
            logger.error("audit outcome row not durable", metadata: ["intent": "\(intent.seq)", "error": "\(error)"])
        }
    }

    /// The intent row could not be made durable, so the action was not taken.
    public struct IntentNotDurable: Error, CustomStringConvertible {
        public var underlying: any Error
        public static let notTaken = "the audit log could not record this action, so it was not taken"
        public var description: String { "\(Self.notTaken): \((underlying as? APIError)?.message ?? "\(underlying)")" }
    }

    /// Runs `action` between a durable intent row and an outcome row. `judge` names a failure's
    /// result (`refused` or `failed`) and its text; throws `IntentNotDurable` without acting
    /// when the intent row cannot be written.
    public func audited<T>(
        actor: String, kind: String, subject: String, details: [(String, String)] = [],
        judge: (any Error) -> (result: String, text: String) = { ("failed", "\($0)") }, _ action: () async throws -> T
    ) async throws -> T {
        let intent: Intent
        do {
            intent = try await self.intent(actor: actor, kind: kind, subject: subject, details: details)
        } catch {
            throw IntentNotDurable(underlying: error)
        }
        do {
            let result = try await action()
            await outcome(intent, result: "ok")
            return result
        } catch {
            let verdict = judge(error)
            await outcome(intent, result: verdict.result, details: [("error", verdict.text)])
            throw error
        }
    }

    /// A snapshot carrying `head` was confirmed upstream: rows through it may be pruned once
    /// they are older than the retention.
    public func upstreamConfirmed(_ head: AuditHead) {
        writer.enqueue { connection in try AuditStore.noteUpstream(seq: head.seq, atMs: Clock.wallMilliseconds(), in: connection) }
    }

    /// Prunes rows older than `retainMs` through the newest head that covers only such rows,
    /// confirmed upstream unless `upstreamOnly` is false (the node has no upstream)
    /// (`AuditStore.pruneTarget`), and chains a `pruned_through` row that says so. Returns the
    /// row pruned through, if any.
    @discardableResult
    public func prune(retainMs: Int64, nowMs: Int64, upstreamOnly: Bool = true) throws -> Int64? {
        let store = AuditStore(database: writer.database)
        let covered = try store.upstreamSeq()
        let footprint = try store.footprint()
        let anchor = try store.anchor()
        lastCheck.withLock { $0 = (footprint.bytes, anchor?.seq, covered, upstreamOnly) }
        guard
            let head = try store.pruneTarget(
                retainMs: retainMs, nowWallMs: nowMs, bootID: bootID, nowMonoMs: Clock.monotonicNow().nanoseconds / 1_000_000,
                upstreamOnly: upstreamOnly), head.seq > (anchor?.seq ?? 0) else { return nil }
        writer.enqueue { connection in try AuditStore.prune(through: head.seq, sha256: head.sha256, atMs: nowMs, in: connection) }
        lastCheck.withLock { $0.prunedThrough = head.seq }
        record(
            AuditEntry(
                actor: "lead", kind: "pruned_through", subject: key.nodeID,
                body: AuditBody.canonical([
                    ("seq", String(head.seq)), ("sha256", head.sha256), ("node_key", key.publicKeyHex),
                    ("retain_days", String(retainMs / 86_400_000)), ("upstream", upstreamOnly ? "confirmed" : "none"),
                ])))
        return head.seq
    }

    public var status: StatusReport.AuditStatus {
        let (tip, head) = chain.withLock { ($0.tip, $0.newestHead) }
        let check = lastCheck.withLock { $0 }
        return StatusReport.AuditStatus(
            lastSeq: tip.seq, rows: tip.seq - (check.prunedThrough ?? 0), bytesAtLastCheck: check.bytes, prunedThroughSeq: check.prunedThrough,
            upstreamSeq: check.upstream > 0 ? check.upstream : nil, newestHeadSeq: head?.seq, prunedByAgeAlone: !check.upstreamOnly)
    }

    /// Signs the chain's tip now (at a snapshot) and returns the head once it is durable.
    public func sealHead() async throws -> AuditHead? {
        let sealed = Mutex<AuditHead?>(nil)
        try await writer.write { [self] connection in
            let (tip, newest) = chain.withLock { ($0.working, $0.workingHead) }
            guard tip.seq > 0 else { return }
            if let newest, newest.seq == tip.seq { return sealed.withLock { $0 = newest } }
            guard let head = sign(tip.seq, tip.sha256, atMs: Clock.wallMilliseconds()) else { return }
            try AuditStore.appendHead(head, in: connection)
            chain.withLock { $0.workingHead = head }
            sealed.withLock { $0 = head }
        }
        return sealed.withLock { $0 }
    }

    private func sign(_ seq: Int64, _ sha256: String, atMs: Int64) -> AuditHead? {
        do {
            let signature = try key.sign(AuditHead.signedMessage(seq: seq, sha256: sha256))
            return AuditHead(seq: seq, sha256: sha256, atMs: atMs, signature: Hex.encode(signature))
        } catch {
            logger.error("audit head not signed", metadata: ["seq": "\(seq)", "error": "\(error)"])
            return nil
        }
    }
}

/// Whether the wall clock can be believed (a Pi has no RTC: until NTP syncs, it may read
/// 1970 or the last shutdown), from the kernel's NTP status, which timedatectl's
/// NTPSynchronized reads too and which exists without systemd.
struct SystemClockStatus: Sendable {
    var isSynchronized: Bool {
        synchronized == true
    }

    /// nil when the kernel would not say (adjtimex refused, as a seccomp filter may).
    var synchronized: Bool? {
        switch pimesh_clock_synchronized() {
        case -1: nil
        case let state: state == 1
        }
    }

    static func bootID(procRoot: String = "/proc") -> String {
        (try? FileIO.readText(path: procRoot + "/sys/kernel/random/boot_id"))?.filter { $0 != "\n" } ?? "unknown"
    }
}
