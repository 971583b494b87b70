import Glibc
import Logging
import PimeshCore
import PimeshStore
import Testing

@testable import PimeshRuntime

@Suite struct StoreWriterTests {
    func database() throws -> Database {
        var template = Array("/tmp/pimesh-writer-XXXXXX".utf8CString)
        let directory = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!)
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
            await writer.flush()
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
        await writer.flush()
        #expect(writer.stats.commits == 0)
    }
}
