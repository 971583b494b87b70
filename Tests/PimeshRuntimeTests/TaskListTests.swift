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

        // Nobody has the capability, so each task ends (skipped) as it is accepted.
        var submitted: [TaskView] = []
        for index in 0..<30 {
            let answer = try await tasks.submit(TaskSubmission(capability: "nobody-has-it", payload: "p\(index)", weight: 1))
            guard case .created(let view) = answer else { Issue.record("task \(index) was not created"); return }
            submitted.append(view)
        }
        let newestFirst = submitted.sorted { ($0.submittedAtMs, $0.id) > ($1.submittedAtMs, $1.id) }.map(\.id)

        var paged: [String] = []
        var cursor: TaskStore.Cursor?
        var pages = 0
        repeat {
            let page = try await tasks.list(limit: 7, state: nil, after: cursor, payloads: false)
            #expect(page.tasks.count <= 7)
            #expect(page.tasks.allSatisfy { $0.payload == nil && $0.state == "skipped" })
            paged += page.tasks.map(\.id)
            cursor = page.nextCursor.flatMap(TaskService.cursor)
            pages += 1
        } while cursor != nil && pages < 10
        #expect(paged == newestFirst)

        let withPayloads = try await tasks.list(limit: 3, state: .skipped, after: nil, payloads: true)
        #expect(withPayloads.tasks.map(\.id) == Array(newestFirst.prefix(3)))
        #expect(withPayloads.tasks.allSatisfy { $0.payload?.hasPrefix("p") == true })
        #expect(withPayloads.counts["skipped"] == 30)
        #expect(try await tasks.list(limit: 100, state: .queued, after: nil, payloads: false).tasks.isEmpty)
    }
}
