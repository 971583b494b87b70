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
