import PimeshAgent
import PimeshCore
import PimeshStore
import Testing

@testable import PimeshRuntime

@Suite struct LiveTaskTests {
    func task() -> TaskService.LiveTask {
        let row = TaskRow(
            id: "t1", idempotencyKey: nil, capability: "work", payload: "", weight: 1, deadlineMs: nil, state: .queued,
            agentID: nil, attempts: 0, submittedAtMs: 0)
        return TaskService.LiveTask(row: row, submittedAt: Instant(nanoseconds: 0), durable: true)
    }

    /// Agents take a task back and forth without bound (lease after lease, failure after
    /// failure): the list of former holders keeps the newest few, each once.
    @Test func formerHoldersAreBoundedNewestLastAndEachOnce() {
        var live = task()
        let agents = (0..<20).map { AgentID(high: 0, low: UInt64($0)) }
        for agent in agents { live.takeBack(from: agent) }
        #expect(live.formerHolders == Array(agents.suffix(TaskService.LiveTask.formerHoldersKept)))
        live.takeBack(from: agents[15])
        #expect(live.formerHolders.count == TaskService.LiveTask.formerHoldersKept)
        #expect(live.formerHolders.last == agents[15])
        #expect(live.formerHolders.filter { $0 == agents[15] }.count == 1)
    }
}
