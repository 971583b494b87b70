import Glibc
import Logging
import Synchronization
import PimeshCore
import PimeshServer
import PimeshSnapshot
import PimeshStore
import PimeshSystem
import Testing
import PimeshTestSupport

@testable import PimeshRuntime

@Suite struct StoreWriterTests {
    func database() throws -> Database {
        let directory = Scratch.directory("pimesh-writer")
        return try Database(path: directory + "/w.db")
    }

    func row(_ name: String) -> AgentRow {
        AgentRow(id: .random(), name: name, agentClass: .local, capabilities: [], secret: [1], registeredAtMs: 0)
    }

    @Test func queuedWritesShareOneCommitAndAFailureFailsAlone() async throws {
        let database = try database()
        let writer = StoreWriter(database: database, commitInterval: .milliseconds(50), logger: Logger(label: "test"))
        let rows = (0..<20).map { row("agent-\($0)") }
        let duplicate = row("agent-3")
        let results = await withTaskGroup(of: Bool.self) { group in
            for row in rows + [duplicate] {
                group.addTask {
                    do {
                        try await writer.write { try AgentStore.insert(row, in: $0) }
                        return true
                    } catch {
                        return false
                    }
                }
            }
            // Let all 21 queue up, then commit them in one go.
            try? await Task.sleep(for: .milliseconds(200))
            await writer.commitQueued()
            var outcomes: [Bool] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        #expect(results.filter { $0 }.count == 20)
        #expect(results.filter { !$0 }.count == 1)
        #expect(writer.stats.commits == 1)
        #expect(try AgentStore(database: database).loadAgents().count == 20)
    }

    @Test func nothingQueuedMeansNoCommit() async throws {
        let writer = StoreWriter(database: try database(), commitInterval: .milliseconds(50), logger: Logger(label: "test"))
        await writer.commitQueued()
        #expect(writer.stats.commits == 0)
    }

    @Test func writesCommitInTheOrderTheyWereQueuedAndNoneAfterTheFinalCommit() async throws {
        let database = try database()
        try database.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)")
        let writer = StoreWriter(database: database, commitInterval: .milliseconds(5), durableDelay: .milliseconds(1), logger: Logger(label: "test"))
        let running = Task { try await writer.run() }
        // Whole-row rewrites of one key, as task hand-overs are: the newest must win.
        for value in 0..<200 {
            writer.enqueue { try $0.run("INSERT OR REPLACE INTO t (k, v) VALUES (1, ?)", [.integer(Int64(value))]) }
            if value % 40 == 0 { try await Task.sleep(for: .milliseconds(3)) }
        }
        try await writer.write { try $0.run("INSERT OR REPLACE INTO t (k, v) VALUES (2, 1)") }
        let stored = try database.withConnection { try $0.query("SELECT v FROM t WHERE k = 1") { $0.int(0) } }
        #expect(stored == [199])
        writer.enqueue { try $0.run("INSERT OR REPLACE INTO t (k, v) VALUES (3, 1)") }
        running.cancel()
        _ = try? await running.value
        let afterStop = try database.withConnection { try $0.query("SELECT COUNT(*) FROM t WHERE k = 3") { $0.int(0) } }
        #expect(afterStop == [1], "what was queued before the stop is committed by the final commit")
        await #expect(throws: StoreWriter.Closed.self) {
            try await writer.write { try $0.run("INSERT INTO t (k, v) VALUES (4, 1)") }
        }
    }
}

/// Keeps the messages logged through it.
struct CollectingLogHandler: LogHandler {
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.append("\(event.level) \(event.message)")
    }
}

/// A full disk, simulated with SQLite's `max_page_count` (a write that needs a page it may not
/// have fails with SQLITE_FULL, as one on a full file system does).
@Suite struct FullStoreTests {
    let directory = Scratch.directory("pimesh-full")

    let logged = CollectingLogHandler.Lines()

    func open() throws -> (Database, StoreWriter, AuditLog) {
        let database = try Database(path: directory + "/pimesh.db")
        let lines = logged
        let writer = StoreWriter(
            database: database, commitInterval: .milliseconds(50), logger: Logger(label: "test") { _ in CollectingLogHandler(lines: lines) })
        let audit = try AuditLog.open(
            writer: writer, key: try NodeKey.loadOrCreate(dataDir: directory), headEveryRows: 256, logger: Logger(label: "test"))
        return (database, writer, audit)
    }

    /// Big enough to need pages of its own: refused while the store is full.
    func entry(_ index: Int) -> AuditEntry {
        AuditEntry(actor: "lead", kind: "event-\(index)", subject: "agent", body: AuditBody.canonical([("text", String(repeating: "x", count: 6000))]))
    }

    func fill(_ database: Database) throws {
        let pages = try database.withConnection { try $0.query("PRAGMA page_count") { $0.int(0) }.first ?? 0 }
        try database.execute("PRAGMA max_page_count=\(pages)")
    }

    @Test func aWriteThatFindsTheStoreFullGets507AndTheStoreSaysWhy() async throws {
        let (database, writer, _) = try open()
        try database.execute("CREATE TABLE t (v TEXT)")
        try fill(database)
        let refused = Task { try await writer.write { try $0.run("INSERT INTO t VALUES (?)", [.text(String(repeating: "y", count: 9000))]) } }
        while writer.stats.failing == nil {
            await writer.commitQueued()
            await Task.yield()
        }
        do {
            try await refused.value
            Issue.record("a write to a full store succeeded")
        } catch let error as APIError {
            #expect(error.status.code == 507)
            #expect(error.message.contains("the store is full (\(directory) has"), "\(error.message)")
            #expect(error.retryAfterSeconds == 5)
        }
        #expect(writer.stats.failing?.contains("sqlite error 13") == true)
        #expect(writer.stats.failedBatches == 1)
        try database.execute("PRAGMA max_page_count=1000000")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await writer.write { try $0.run("INSERT INTO t VALUES ('z')") } }
            while writer.stats.commits == 0 { await writer.commitQueued(); await Task.yield() }
            try await group.waitForAll()
        }
        #expect(writer.stats.failing == nil && writer.stats.failedBatches == 0)
        #expect(logged.all == ["error store commit failed", "notice store commits succeed again"])
    }

    /// What the lead decided while the store was full (a task handed out, an incident) reaches
    /// it once it has room, in order and only the newest of each row, without a new write to
    /// carry it; and a failing store is tried once a second, not as fast as writes come.
    @Test func backgroundWritesAFullStoreRefusedAreKeptAndCommittedOnceItHasRoom() async throws {
        let (database, writer, _) = try open()
        try database.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        let running = Task { try await writer.run() }
        defer { running.cancel() }
        try fill(database)
        let big = String(repeating: "y", count: 9000)
        writer.enqueue { try $0.run("INSERT OR REPLACE INTO t VALUES ('0', 'small')") }
        writer.enqueue(key: "a") { try $0.run("INSERT OR REPLACE INTO t VALUES ('a', ?)", [.text("first " + big)]) }
        writer.enqueue(key: "a") { try $0.run("INSERT OR REPLACE INTO t VALUES ('a', ?)", [.text("second " + big)]) }
        writer.enqueue { try $0.run("INSERT OR REPLACE INTO t VALUES ('b', ?)", [.text(big)]) }
        #expect(await eventually { writer.stats.failedBatches >= 3 })
        let stats = writer.stats
        #expect(stats.waitingWrites == 3, "the two writes of row a are one")
        // Nothing committed in part: a write that fits waits with those that do not, in order.
        #expect(try database.read { try $0.query("SELECT count(*) FROM t") { $0.int(0) } } == [0])
        let failingFor = Clock.monotonicNow() - (stats.failingSince ?? Clock.monotonicNow())
        #expect(failingFor >= .milliseconds(1900), "three tries in \(failingFor): not one a second")
        // Room again, and nothing new written: the kept writes land by themselves.
        try database.execute("PRAGMA max_page_count=1000000")
        #expect(await eventually { writer.stats.failing == nil && writer.stats.waitingWrites == 0 })
        let rows = try database.read { try $0.query("SELECT k, substr(v, 1, 6) FROM t ORDER BY k") { "\($0.text(0))=\($0.text(1))" } }
        #expect(rows == ["0=small", "a=second", "b=yyyyyy"])
    }

    func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool) async -> Bool {
        let deadline = Clock.monotonicNow() + timeout
        while Clock.monotonicNow() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    /// Writes kept for a failing store are bounded: past the limit the oldest go, counted.
    @Test func keptWritesStopAtTheirLimit() async throws {
        let (database, writer, _) = try open()
        try database.execute("CREATE TABLE t (v TEXT)")
        try fill(database)
        let big = String(repeating: "y", count: 9000)
        writer.enqueue { try $0.run("INSERT INTO t VALUES (?)", [.text(big)]) }
        for _ in 0..<(StoreWriter.waitingLimit + 4) { writer.enqueue { _ in } }
        await writer.commitQueued()
        #expect(writer.stats.waitingWrites == StoreWriter.waitingLimit)
        #expect(writer.stats.droppedWrites == 5)
        #expect(logged.all.contains("error store writes dropped: too many wait for a failing store"))
    }

    /// A row recorded on another thread while a write of the audit log fails is not undone
    /// with that write: it waits and is chained with the next one.
    @Test func anAuditRowRecordedWhileAWriteFailsIsKept() async throws {
        struct Refused: Error {}
        let (database, writer, audit) = try open()
        audit.record(AuditEntry(actor: "lead", kind: "first", subject: "x", body: ""))
        audit.record(AuditEntry(actor: "lead", kind: "rolled-back", subject: "x", body: "")) { _ in
            audit.record(AuditEntry(actor: "lead", kind: "meanwhile", subject: "x", body: ""))
            throw Refused()
        }
        await writer.commitQueued()
        await writer.commitQueued()
        let kinds = try AuditStore(database: database).records(.init(), limit: 100).map(\.kind)
        #expect(kinds == ["genesis", "first", "meanwhile"])
        let report = try AuditVerification.run(databasePath: database.path)
        #expect(report.ok, "\(report.problems)")
    }

    /// An agent that flaps writes its burst of rows and no more; the lead's stop says how many
    /// were held back, and the chain still verifies. Rows written unpaced are all kept.
    @Test func pacedRowsPastTheirBurstAreCountedAndSaidAtTheStop() async throws {
        let (database, writer, audit) = try open()
        let burst = AuditPace.Settings().perSubjectBurst
        for index in 0..<(burst + 40) {
            audit.recordPaced(AuditEntry(actor: "lead", kind: index % 2 == 0 ? "alive" : "suspected", subject: "flapper", body: ""))
        }
        for _ in 0..<3 { audit.record(AuditEntry(actor: "operator (uid 0)", kind: "heal", subject: "flapper", body: "phase=intent")) }
        audit.flushPaced()
        await writer.commitQueued()
        #expect(try AuditStore(database: database).records(.init(kind: "audit.rows_coalesced"), limit: 10).isEmpty, "not before a minute")
        audit.flushPaced(now: true)
        await writer.commitQueued()
        let records = try AuditStore(database: database).records(.init(), limit: 1000)
        #expect(records.filter { $0.subject == "flapper" && $0.actor == "lead" }.count == burst)
        #expect(records.filter { $0.kind == "heal" }.count == 3)
        let coalesced = try #require(records.first { $0.kind == "audit.rows_coalesced" })
        #expect(coalesced.body.contains("rows=40") && coalesced.body.contains("most=flapper:40"), "\(coalesced.body)")
        let report = try AuditVerification.run(databasePath: database.path)
        #expect(report.ok, "\(report.problems)")
    }

    /// A full disk fails every write for as long as it lasts: one line, then one every 30 s,
    /// not one per request; a new run of failures after a recovery is logged at once.
    @Test func aRunOfFailedCommitsIsLoggedOnce() async throws {
        let (database, writer, _) = try open()
        try database.execute("CREATE TABLE t (v TEXT)")
        try fill(database)
        let big = String(repeating: "y", count: 9000)
        for _ in 0..<20 {
            writer.enqueue { try $0.run("INSERT INTO t VALUES (?)", [.text(big)]) }
            await writer.commitQueued()
        }
        #expect(writer.stats.failedBatches == 20)
        #expect(logged.all == ["error store commit failed"])
        try database.execute("PRAGMA max_page_count=1000000")
        writer.enqueue { try $0.run("INSERT INTO t VALUES ('z')") }
        await writer.commitQueued()
        try fill(database)
        writer.enqueue { try $0.run("INSERT INTO t VALUES (?)", [.text(big)]) }
        await writer.commitQueued()
        #expect(logged.all == ["error store commit failed", "notice store commits succeed again", "error store commit failed"])
    }

    /// Automatic audit rows refused by a full store are kept, chained first and in order with
    /// the next batch after one that commits, and past the limit counted in one row: the chain
    /// verifies and no row goes missing silently. A failing retry does not spin the writer.
    @Test func auditRowsOfAFullStoreAreKeptAndChainedOnceItHasRoom() async throws {
        let (database, writer, audit) = try open()
        audit.record(AuditEntry(actor: "lead", kind: "before", subject: "x", body: ""))
        await writer.commitQueued()
        try fill(database)
        let refused = AuditLog.pendingLimit + 3
        for index in 0..<refused { audit.record(entry(index)) }
        await writer.commitQueued()
        #expect(writer.stats.failing != nil)
        // Nothing was queued again after the failure: a full disk does not make the writer spin.
        let commits = writer.stats.commits
        await writer.commitQueued()
        #expect(writer.stats.commits == commits)

        try database.execute("PRAGMA max_page_count=1000000")
        // Any batch that commits (a checkpoint, here a no-op) sends the waiting rows after it.
        writer.enqueue { _ in }
        await writer.commitQueued()
        #expect(writer.stats.failing == nil)
        await writer.commitQueued()
        audit.record(AuditEntry(actor: "lead", kind: "after", subject: "x", body: ""))
        await writer.commitQueued()
        let kinds = try AuditStore(database: database).records(.init(), limit: 10_000).map(\.kind)
        #expect(kinds.first == "genesis" && kinds.dropFirst().first == "before")
        // Compared as one line each: a failed comparison of 4,096 names would flood the log.
        let kept = kinds.dropFirst(2).prefix(AuditLog.pendingLimit).joined(separator: ",")
        #expect(kept == (0..<AuditLog.pendingLimit).map { "event-\($0)" }.joined(separator: ","), "\(kinds.count) rows")
        #expect(kinds.suffix(2).joined(separator: ",") == "audit.rows_lost,after")
        let lost = try AuditStore(database: database).records(.init(kind: "audit.rows_lost"), limit: 1)
        #expect(lost.first?.body.contains("rows=3") == true)
        let report = try AuditVerification.run(databasePath: database.path)
        #expect(report.ok, "\(report.problems)")
        #expect(report.rows == kinds.count)
    }
}
