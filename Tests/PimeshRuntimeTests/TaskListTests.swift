import Logging
import PimeshAgent
import PimeshCore
import PimeshStore
import Testing
import PimeshTestSupport

@testable import PimeshRuntime

/// A list page merges the store's rows with the lead's copies in memory (open tasks, the ring of
/// finished ones): newest first, each task once across pages, filtered by state.
@Suite struct TaskListTests {
    @Test func pagesHoldEveryTaskOnceNewestFirstAndTheFilterHolds() async throws {
        let database = try Database(path: Scratch.directory("pimesh-task-list") + "/t.db")
        let logger = Logger(label: "task-list-test")
        let registry = AgentRegistry()
        let writer = StoreWriter(database: database, commitInterval: .milliseconds(5), logger: logger)
        let metrics = LeadMetrics()
        let conflicts = ConflictService(registry: registry, writer: writer, store: ConflictStore(database: database), metrics: metrics, logger: logger)
        let tasks = TaskService(
            settings: .init(), registry: registry, writer: writer, store: TaskStore(database: database), kpis: KPIRecorder(),
            metrics: metrics, conflicts: conflicts, logger: logger)
        let running = Task { try await writer.run() }
        defer { running.cancel() }

        // An agent that has not heartbeated yet: its tasks wait for it (open, queued). Nobody has
        // the other capability, so those tasks end (skipped) as they are accepted.
        try registry.add(AgentRow(id: .random(), name: "ocr-1", agentClass: .local, capabilities: ["ocr"], secret: [1], registeredAtMs: 0))
        var submitted: [TaskView] = []
        for index in 0..<30 {
            let capability = index % 3 == 0 ? "ocr" : "nobody-has-it"
            let answer = try await tasks.submit(TaskSubmission(capability: capability, payload: "p\(index)", weight: 1))
            guard case .created(let view) = answer else { Issue.record("task \(index) was not created"); return }
            submitted.append(view)
        }
        #expect(submitted.filter { $0.state == "queued" }.count == 10)
        let newest = submitted.sorted { ($0.submittedAtMs, $0.id) > ($1.submittedAtMs, $1.id) }
        let newestFirst = newest.map(\.id)

        var paged: [String] = []
        var cursor: TaskStore.Cursor?
        var pages = 0
        repeat {
            let page = try await tasks.list(limit: 7, state: nil, after: cursor, payloads: false)
            #expect(page.tasks.count <= 7)
            #expect(page.tasks.allSatisfy { $0.payload == nil && ($0.state == "skipped") == ($0.capability == "nobody-has-it") })
            paged += page.tasks.map(\.id)
            cursor = page.nextCursor.flatMap(TaskService.cursor)
            pages += 1
        } while cursor != nil && pages < 10
        #expect(paged == newestFirst)

        let skipped = newest.filter { $0.state == "skipped" }.map(\.id)
        let withPayloads = try await tasks.list(limit: 3, state: .skipped, after: nil, payloads: true)
        #expect(withPayloads.tasks.map(\.id) == Array(skipped.prefix(3)))
        #expect(withPayloads.tasks.allSatisfy { $0.payload?.hasPrefix("p") == true })
        #expect(withPayloads.counts["skipped"] == 20 && withPayloads.counts["queued"] == 10)
        let queued = try await tasks.list(limit: 100, state: .queued, after: nil, payloads: false)
        #expect(queued.tasks.map(\.id) == newest.filter { $0.state == "queued" }.map(\.id))
        #expect(queued.tasks.allSatisfy { $0.capability == "ocr" })
        #expect(queued.nextCursor == nil)
    }
}
