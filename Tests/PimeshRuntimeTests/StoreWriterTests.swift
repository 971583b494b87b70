import Glibc
import Logging
import PimeshCore
import PimeshStore
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
