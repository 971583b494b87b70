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

    /// The clock stepped back five hours between two finishes: the count bound deletes the
    /// task that finished first, by the store's commit order, not the one whose wall-clock
    /// finish reads earlier (it finished last, and its idempotency key must still be known).
    @Test func retentionDeletesTheEarliestFinishedNotTheEarliestByWallClock() throws {
        let database = try Database(path: directory + "/order.db")
        let beforeStep: Int64 = 1_800_000_000_000
        var first = task("first", state: .running, key: "k-first")
        var second = task("second", state: .queued, key: "k-second")
        try database.transaction { connection in
            try TaskStore.save(first, in: connection)
            try TaskStore.save(second, in: connection)
        }
        first.state = .succeeded
        first.finishedAtMs = beforeStep
        try database.transaction { try TaskStore.save(first, in: $0) }
        second.state = .failed
        second.finishedAtMs = beforeStep - 5 * 3_600_000
        try database.transaction { try TaskStore.save(second, in: $0) }
        // Skipped at submission: finished as it is first stored.
        var third = task("third", state: .skipped, key: "k-third")
        third.finishedAtMs = beforeStep - 5 * 3_600_000 + 1
        try database.transaction { try TaskStore.save(third, in: $0) }
        let keepTwo = TaskRetention(maxAgeMs: 7 * 86_400_000, maxFinished: 2, maxBytes: 64 << 20)
        let pruned = try database.transaction { connection in
            try TaskStore.pruneFinished(retention: keepTwo, nowMs: beforeStep, batch: 256, makeRoom: false, in: connection)
        }
        #expect(pruned.ids == ["first"])
        let store = TaskStore(database: database)
        #expect(try store.load(idempotencyKey: "k-second")?.id == "second")
        #expect(try store.load(idempotencyKey: "k-third")?.id == "third")
        #expect(try store.newestFinishedAtMs() == beforeStep - 5 * 3_600_000 + 1)
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

    @Test func aPageOfConflictsStopsReadingPastItsByteBudget() throws {
        let database = try Database(path: directory + "/pages.db")
        let agent = AgentRow(id: AgentID.random(), name: "a", agentClass: .local, capabilities: [], secret: [1], registeredAtMs: 1)
        try database.transaction { try AgentStore.insert(agent, in: $0) }
        let evidence = String(repeating: "e", count: 4000)
        try database.transaction { connection in
            for i in 0..<50 {
                try ConflictStore.append(
                    ConflictRecord(
                        atMs: Int64(i), agentID: agent.id, source: "task-\(i)", type: .dataContradiction, priority: 2, strategy: "RECONCILE",
                        expected: evidence, received: evidence, contextHash: nil, quarantined: false), in: connection)
            }
        }
        let store = ConflictStore(database: database)
        #expect(try store.recent(limit: 50).count == 50)
        // 8,000 bytes of evidence each: the fourth passes 30,000 and is the last read.
        let page = try store.recent(limit: 50, maxBytes: 30_000)
        #expect(page.map(\.seq) == [50, 49, 48, 47])
        #expect(try store.recent(limit: 50, before: 47, maxBytes: 30_000).map(\.seq) == [46, 45, 44, 43])
    }
}
