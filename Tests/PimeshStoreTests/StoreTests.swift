import CSQLite
import Glibc
import PimeshAgent
import PimeshCore
import Testing
import PimeshTestSupport

@testable import PimeshStore

func temporaryDirectory() -> String {
    Scratch.directory("pimesh-test")
}

@Suite struct StoreTests {
    let directory = temporaryDirectory()

    func row(_ name: String) -> AgentRow {
        AgentRow(id: AgentID.random(), name: name, agentClass: .gpu, capabilities: ["infer", "sense"], secret: [1, 2, 3], registeredAtMs: 1000)
    }

    @Test func opensInWALAndMigrates() throws {
        let database = try Database(path: directory + "/a.db")
        #expect(try database.schemaVersion == Schema.migrations.count)
        let mode = try database.withConnection { try $0.query("PRAGMA journal_mode") { $0.text(0) } }
        #expect(mode == ["wal"])
        let sync = try database.withConnection { try $0.query("PRAGMA synchronous") { $0.int(0) } }
        #expect(sync == [1])  // NORMAL
    }

    @Test func bothConnectionsHaveABoundedPageCache() throws {
        let database = try Database(path: directory + "/cache.db")
        let writer = try database.withConnection { try $0.query("PRAGMA cache_size") { $0.int(0) } }
        let reader = try database.read { try $0.query("PRAGMA cache_size") { $0.int(0) } }
        // Negative: KiB, not pages.
        #expect(writer == [-1024] && reader == [-1024])
    }

    /// SQLite would start each connection's page cache with one allocation of 20 pages (about
    /// 87 KB, all of it written), whether the connection ever holds that many pages or not.
    /// `sqlite3_memory_used` counts the whole process: `make test` runs the tests one at a time.
    @Test func connectionsAllocateOnlyThePagesTheyHold() throws {
        let before = sqlite3_memory_used()
        let database = try Database(path: directory + "/bulk.db", migrations: [Migration(version: 1, statements: ["CREATE TABLE t (x INTEGER)"])])
        try database.execute("INSERT INTO t VALUES (1)")
        #expect(try database.read { try $0.query("SELECT count(*) FROM t") { $0.int(0) } } == [1])
        let used = sqlite3_memory_used() - before
        // Two pages a connection, a schema of one table and a few statements; the bulk
        // allocations alone would be 174 KB.
        #expect(used < 87_000, "SQLite holds \(used) bytes for a database of one table")
        // The setting took: no connection of this process opened before it.
        #expect(SQLiteLibrary.configured == SQLITE_OK)
        withExtendedLifetime(database) {}
    }

    @Test func textKeepsEveryByteAndAnEmptyTextIsEmpty() throws {
        let database = try Database(path: directory + "/nul.db", migrations: [Migration(version: 1, statements: ["CREATE TABLE t (x TEXT NOT NULL)"])])
        for value in ["a\u{0}b\u{0}", "", "\u{0}", "plain"] {
            try database.withConnection { try $0.run("INSERT INTO t VALUES (?)", [.text(value)]) }
            let stored = try database.read { try $0.query("SELECT x, length(CAST(x AS BLOB)) FROM t WHERE x = ?", [.text(value)]) { ($0.text(0), $0.int(1)) } }
            #expect(stored.count == 1 && stored[0].0 == value && stored[0].1 == value.utf8.count, "\(stored)")
        }
    }

    @Test func agentsSurviveReopening() throws {
        let path = directory + "/b.db"
        let original = row("alpha")
        do {
            let database = try Database(path: path)
            try database.transaction { try AgentStore.insert(original, in: $0) }
        }
        let reopened = AgentStore(database: try Database(path: path))
        #expect(try reopened.loadAgents() == [original])
    }

    /// Registered through the API, made for a manifest, or from before the store said (schema 10).
    @Test func whoMadeAnAgentSurvivesReopeningAndAnOldRowCanBeMarked() throws {
        let path = directory + "/origin.db"
        var rows = [row("api"), row("manifest"), row("older")]
        rows[0].selfRegistered = true
        rows[1].selfRegistered = false
        do {
            let database = try Database(path: path)
            try database.transaction { connection in for row in rows { try AgentStore.insert(row, in: connection) } }
        }
        let reopened = try Database(path: path)
        func origins() throws -> [String: Bool?] {
            Dictionary(uniqueKeysWithValues: try AgentStore(database: reopened).loadAgents().map { ($0.name, $0.selfRegistered) })
        }
        #expect(try origins() == ["api": true, "manifest": false, "older": nil])
        try reopened.transaction { try AgentStore.markSelfRegistered(id: rows[2].id, false, in: $0) }
        #expect(try origins() == ["api": true, "manifest": false, "older": false])
    }

    @Test func duplicateNameIsRefusedAndNothingElseIsLost() throws {
        let database = try Database(path: directory + "/c.db")
        try database.transaction { try AgentStore.insert(row("alpha"), in: $0) }
        #expect(throws: StoreError.self) {
            try database.transaction { try AgentStore.insert(row("alpha"), in: $0) }
        }
        #expect(try AgentStore(database: database).loadAgents().count == 1)
    }

    @Test func checkpointsUpsert() throws {
        let database = try Database(path: directory + "/d.db")
        let agent = row("alpha")
        try database.transaction { try AgentStore.insert(agent, in: $0) }
        var checkpoint = AgentCheckpoint(
            agentID: agent.id, atMs: 1, lastIteration: 10, state: .ready, latencyMs: 2, queueDepth: 3, score: 100, reliability: 1, drift: 0.1)
        try database.transaction { try AgentStore.upsert(checkpoint, in: $0) }
        checkpoint.lastIteration = UInt64.max - 1
        checkpoint.state = .conflict
        try database.transaction { try AgentStore.upsert(checkpoint, in: $0) }
        #expect(try AgentStore(database: database).loadCheckpoints() == [agent.id: checkpoint])
    }

    @Test func unreadableRowIsReportedNotSkipped() throws {
        let database = try Database(path: directory + "/e.db")
        try database.withConnection {
            try $0.run(
                "INSERT INTO agents (id, name, class, capabilities, secret, registered_at_ms) VALUES (?, 'x', 'CLASS_Q', '', x'00', 0)",
                [.text(AgentID.random().description)])
        }
        #expect(throws: StoreError.self) { try AgentStore(database: database).loadAgents() }
    }

    @Test func newerSchemaIsRefused() throws {
        let path = directory + "/f.db"
        do {
            let database = try Database(path: path)
            try database.execute("PRAGMA user_version = 99")
        }
        #expect(throws: StoreError.self) { try Database(path: path) }
    }
}

@Suite struct StatementCacheTests {
    let directory = temporaryDirectory()

    func database(_ name: String) throws -> Database {
        let database = try Database(path: directory + "/" + name)
        try database.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        return database
    }

    @Test func aStatementRunAgainIsTheOnePreparedBefore() throws {
        let database = try database("again.db")
        func insertAndCount(_ index: Int) throws -> (rows: Int, kept: Int) {
            try database.withConnection { connection in
                try connection.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text("k\(index)"), .integer(Int64(index))])
                let rows = try connection.query("SELECT count(*) FROM kv") { $0.int(0) }.first ?? 0
                return (rows, connection.statements?.count ?? 0)
            }
        }
        let first = try insertAndCount(0)
        var last = first
        for index in 1..<50 { last = try insertAndCount(index) }
        #expect(last.rows == 50)
        #expect(first.kept >= 2 && last.kept == first.kept)
        // One INSERT statement ran all fifty times: prepared once, not fifty times.
        let runs = try database.withConnection { connection -> Int32 in
            let (insert, _) = try #require(connection.statements?.take("INSERT INTO kv (k, v) VALUES (?, ?)"))
            defer { sqlite3_finalize(insert) }
            return sqlite3_stmt_status(insert, SQLITE_STMTSTATUS_RUN, 0)
        }
        #expect(runs == 50)
    }

    @Test func aKeptStatementHoldsNoValueOfItsLastRun() throws {
        let database = try database("cleared.db")
        try database.withConnection { try $0.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text("a"), .integer(1)]) }
        // Bound only the key: the value left out must be NULL (refused by NOT NULL), not the 1 of the run before.
        #expect(throws: StoreError.self) {
            try database.withConnection { try $0.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text("b")]) }
        }
        let rows = try database.read { try $0.query("SELECT k, v FROM kv ORDER BY k") { "\($0.text(0))=\($0.int(1))" } }
        #expect(rows == ["a=1"])
    }

    @Test func aStatementThatFailedRunsAgain() throws {
        let database = try database("failed.db")
        try database.withConnection { try $0.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text("a"), .integer(1)]) }
        #expect(throws: StoreError.self) {
            try database.withConnection { try $0.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text("a"), .integer(2)]) }
        }
        try database.withConnection { try $0.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text("b"), .integer(3)]) }
        let rows = try database.read { try $0.query("SELECT k, v FROM kv ORDER BY k") { "\($0.text(0))=\($0.int(1))" } }
        #expect(rows == ["a=1", "b=3"])
    }

    /// A query's row closure may run the same SQL: it gets a statement of its own, and the
    /// outer one goes on where it was.
    @Test func theSameSQLRunInsideItsOwnRowsGetsAStatementOfItsOwn() throws {
        let database = try database("nested.db")
        for key in ["a", "b", "c"] {
            try database.withConnection { try $0.run("INSERT INTO kv (k, v) VALUES (?, ?)", [.text(key), .integer(1)]) }
        }
        let pairs = try database.withConnection { connection in
            try connection.query("SELECT k FROM kv ORDER BY k") { row in
                let outer = row.text(0)
                let inner = try connection.query("SELECT k FROM kv ORDER BY k") { $0.text(0) }
                return "\(outer):\(inner.joined())"
            }
        }
        #expect(pairs == ["a:abc", "b:abc", "c:abc"])
    }

    /// A SELECT kept mid-way would hold its read transaction: the WAL could not be checkpointed
    /// past it and would grow on the SD card, and the writer's next BEGIN would fail.
    @Test func aQueryLeftMidwayHoldsNoReadTransaction() throws {
        let database = try database("midway.db")
        // Written without kept statements: only the SELECT's is under test.
        for index in 0..<10 { try database.execute("INSERT INTO kv (k, v) VALUES ('k\(index)', 1)") }
        struct Enough: Error {}
        #expect(throws: Enough.self) {
            try database.withConnection { connection in
                _ = try connection.query("SELECT k FROM kv") { _ in throw Enough() }
            }
        }
        try database.execute("INSERT INTO kv (k, v) VALUES ('late', 1)")
        // busy, frames in the WAL, frames checkpointed: busy 0 means no reader held it back.
        let checkpoint = try database.withConnection { try $0.query("PRAGMA wal_checkpoint(TRUNCATE)") { [$0.int(0), $0.int(1), $0.int(2)] } }
        #expect(checkpoint.first?.first == 0)
    }

    @Test func keptStatementsStayWithinTheirBytes() throws {
        let database = try database("bounded.db")
        let cache = StatementCache(byteLimit: 16 * 1024)
        let texts = (0..<200).map { "SELECT k, v, \($0) FROM kv WHERE k = ? AND v > \($0)" }
        try database.withConnection { connection in
            let bounded = Connection(handle: connection.handle, statements: cache)
            for text in texts { _ = try bounded.query(text, [.text("x")]) { $0.int(0) } }
            // The most recent stays, the oldest went.
            #expect(cache.bytes <= 16 * 1024)
            #expect(cache.count > 0 && cache.count < 200)
            let newest = cache.take(texts[199])
            #expect(newest != nil)
            if let (handle, _) = newest { sqlite3_finalize(handle) }
            #expect(cache.take(texts[0]) == nil)
            cache.removeAll()
        }
        #expect(cache.count == 0 && cache.bytes == 0)
        // The lead's own connections hold no more than their limit, however many statements ran.
        try database.withConnection { connection in
            for text in texts { _ = try connection.query(text, [.text("x")]) { $0.int(0) } }
            #expect((connection.statements?.bytes ?? .max) <= StatementCache.byteLimit)
        }
    }
}
