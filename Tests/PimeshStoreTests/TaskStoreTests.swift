import PimeshAgent
import PimeshCore
import Testing

@testable import PimeshStore

@Suite struct TaskStoreTests {
    let directory = temporaryDirectory()

    func task(_ id: String, state: TaskState, key: String? = nil, at: Int64 = 1000) -> TaskRow {
        TaskRow(
            id: id, idempotencyKey: key, capability: "infer", payload: #"{"x":1}"#, weight: 1.5, deadlineMs: 2000, state: state,
            agentID: AgentID.random(), attempts: 1, submittedAtMs: at, predictedMs: 240.5)
    }

    @Test func openTasksSurviveReopeningAndFinishedOnesStayFinished() throws {
        let path = directory + "/t.db"
        var done = task("b", state: .succeeded, key: "k-b", at: 900)
        done.result = #"{"ok":true}"#
        done.actualMs = 250
        done.finishedAtMs = 1250
        let open = [task("a", state: .queued, key: "k-a"), task("c", state: .running, at: 1100)]
        do {
            let database = try Database(path: path)
            try database.transaction { connection in
                for row in open + [done] { try TaskStore.save(row, in: connection) }
            }
        }
        let store = TaskStore(database: try Database(path: path))
        #expect(try store.loadOpen() == open)
        #expect(try store.load(id: "b") == done)
        #expect(try store.load(idempotencyKey: "k-a")?.id == "a")
        #expect(try store.recent(limit: 2).map(\.id) == ["c", "a"])
        #expect(try store.countByState() == [.queued: 1, .running: 1, .succeeded: 1])
    }

    @Test func anIdempotencyKeyNamesOneTask() throws {
        let database = try Database(path: directory + "/k.db")
        try database.transaction { try TaskStore.save(task("a", state: .queued, key: "same"), in: $0) }
        #expect(throws: StoreError.self) {
            try database.transaction { try TaskStore.save(task("b", state: .queued, key: "same"), in: $0) }
        }
        #expect(try TaskStore(database: database).load(idempotencyKey: "same")?.id == "a")
    }
}

@Suite struct ConflictStoreTests {
    let directory = temporaryDirectory()

    @Test func theLogIsAppendOnlyAndCriticalConflictsQuarantine() throws {
        let database = try Database(path: directory + "/c.db")
        let agent = AgentRow(id: AgentID.random(), name: "a", agentClass: .local, capabilities: [], secret: [1], registeredAtMs: 1)
        try database.transaction { try AgentStore.insert(agent, in: $0) }
        let record = ConflictRecord(
            atMs: 5, agentID: agent.id, source: "task-1", type: .hashMismatch, priority: 4, strategy: "INTEGRITY_CHECK",
            expected: "aa", received: "bb", contextHash: nil, quarantined: true)
        try database.transaction { try ConflictStore.append(record, in: $0) }
        let store = ConflictStore(database: database)
        var expected = record
        expected.seq = 1
        #expect(try store.recent(limit: 10) == [expected])
        #expect(try store.quarantines() == [Quarantine(agentID: agent.id, sinceMs: 5, conflictSeq: 1, reason: "HASH_MISMATCH conflict (priority 4)")])
        #expect(throws: StoreError.self) { try database.execute("UPDATE conflicts SET priority = 0") }
        #expect(throws: StoreError.self) { try database.execute("DELETE FROM conflicts") }
        #expect(try store.count() == 1)
        #expect(try store.unresolved(limit: 10).map(\.seq) == [1])
        try database.transaction { try ConflictStore.release(agent.id, atMs: 9, actor: "operator (uid 0)", in: $0) }
        #expect(try store.quarantines().isEmpty)
        #expect(try store.count() == 1)
        // The release resolved the conflict behind the quarantine; a second resolution is ignored.
        let resolution = ConflictResolution(seq: 1, atMs: 9, actor: "operator (uid 0)", note: "agent released from quarantine")
        #expect(try store.resolutions(of: [1]) == [1: resolution])
        try database.transaction { try ConflictStore.resolve(ConflictResolution(seq: 1, atMs: 10, actor: "x", note: "again"), in: $0) }
        #expect(try store.resolutions(of: [1]) == [1: resolution])
        #expect(try store.unresolved(limit: 10).isEmpty)
    }
}
