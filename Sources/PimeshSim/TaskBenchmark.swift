import NIOPosix
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// `pimesh bench tasks`: loads a running lead (and the agents it has, usually a swarm) with
/// tasks and measures what a submitter sees: accept latency (the durable commit included),
/// submit-to-result time and throughput.
public struct TaskBenchmark: Sendable {
    public struct Result: Codable, Sendable {
        public var tasks: Int
        public var concurrency: Int
        public var agents: Int
        public var succeeded: Int
        public var otherOutcomes: Int
        public var seconds: Double
        public var tasksPerSecond: Double
        public var acceptP50Ms: Double
        public var acceptP99Ms: Double
        public var submitToResultP50Ms: Double
        public var submitToResultP99Ms: Double
        /// Every percentile of submit-to-result, the ones above included.
        public var submitToResult: LatencySummary
        public var predictionWithin50Ms: Double
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let dataDir: String
    public let tasks: Int
    public let concurrency: Int
    public let weight: Double

    public init(dataDir: String, tasks: Int, concurrency: Int, weight: Double) {
        self.dataDir = dataDir
        self.tasks = tasks
        self.concurrency = concurrency
        self.weight = weight
    }

    public func run() async throws -> Result {
        let client = try LeadClient(dataDir: dataDir)
        let agents = try client.agents().agents.filter { $0.state == "READY" }
        let capabilities = Array(Set(agents.flatMap(\.capabilities))).sorted()
        guard !capabilities.isEmpty else {
            throw Failure(description: "no READY agent with a capability: start agents first (pimesh swarm --agents 100)")
        }
        let pool = NIOThreadPool(numberOfThreads: concurrency)
        pool.start()
        let accepted = Accepted()
        // The submitters run on the pool's threads, where cancellation cannot reach them: they stop
        // taking tasks once the cursor says so.
        defer { accepted.stop() }
        do {
            try await submit(pool: pool, accepted: accepted, client: client, capabilities: capabilities)
        } catch {
            // Every path shuts the pool down: its threads would outlive the benchmark.
            accepted.stop()
            try? await pool.shutdownGracefully()
            throw error
        }
        try await pool.shutdownGracefully()
        try Task.checkCancellation()
        return try await results(accepted: accepted, client: client, agents: agents.count)
    }

    private func submit(pool: NIOThreadPool, accepted: Accepted, client: LeadClient, capabilities: [String]) async throws {
        try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        try await pool.runIfActive {
                            while true {
                                let index = accepted.claim()
                                if index >= tasks { return }
                                let before = Clock.monotonicNow()
                                let view = try client.submit(
                                    .init(capability: capabilities[index % capabilities.count], payload: "bench \(index)", weight: weight))
                                let ms = (Clock.monotonicNow() - before).milliseconds
                                accepted.record(id: view.id, ms: ms)
                            }
                        }
                    }
                }
                do {
                    try await group.waitForAll()
                } catch {
                    // One submitter failed: the others stop claiming tasks.
                    accepted.stop()
                    throw error
                }
            }
        } onCancel: {
            accepted.stop()
        }
    }

    private func results(accepted: Accepted, client: LeadClient, agents: Int) async throws -> Result {
        let ids = Set(accepted.all.map(\.id))
        // Wait for every result; the list carries each task's submit and finish times. A list of
        // every task is work for the lead the bench measures, so it is asked for once nothing is
        // open (the counts of a one-task page), and once a second should other clients' tasks
        // stay open.
        var finished: [TaskView] = []
        let deadline = Clock.monotonicNow() + .seconds(300)
        var polls = 0
        while true {
            let open = try client.tasks(limit: 1).counts.filter { TaskState(rawValue: $0.key)?.isTerminal == false }.values.reduce(0, +)
            if open == 0 || polls % 10 == 9 {
                let list = try client.tasks(limit: tasks)
                finished = list.tasks.filter { ids.contains($0.id) && $0.isFinished }
                if finished.count >= ids.count { break }
            }
            polls += 1
            if Clock.monotonicNow() > deadline {
                throw Failure(description: "\(ids.count - finished.count) of \(ids.count) tasks unfinished after 300 s")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let accept = LatencySummary(milliseconds: accepted.all.map(\.ms))
        let submitToResult = LatencySummary(
            milliseconds: finished.compactMap { task in task.finishedAtMs.map { Double($0 - task.submittedAtMs) } })
        let firstSubmit = finished.map(\.submittedAtMs).min() ?? 0
        let lastFinish = finished.compactMap(\.finishedAtMs).max() ?? firstSubmit
        let seconds = max(0.001, Double(lastFinish - firstSubmit) / 1000)
        let within = finished.filter { task in
            guard let actual = task.actualMs, let predicted = task.predictedArrivalMs else { return false }
            return abs(actual - predicted) <= 50
        }.count
        return Result(
            tasks: ids.count, concurrency: concurrency, agents: agents,
            succeeded: finished.filter { $0.state == "succeeded" }.count,
            otherOutcomes: finished.filter { $0.state != "succeeded" }.count, seconds: ImpedanceView.round(seconds),
            tasksPerSecond: ImpedanceView.round(Double(ids.count) / seconds), acceptP50Ms: accept.p50Ms,
            acceptP99Ms: accept.p99Ms, submitToResultP50Ms: submitToResult.p50Ms,
            submitToResultP99Ms: submitToResult.p99Ms, submitToResult: submitToResult,
            predictionWithin50Ms: ImpedanceView.round(Double(within) / Double(max(1, finished.count))))
    }
}

/// The submitters' shared cursor and what they measured.
private final class Accepted: Sendable {
    private let state = Mutex<(next: Int, stopped: Bool, taken: [(id: String, ms: Double)])>((0, false, []))

    /// The next task's index, or Int.max once stopped.
    func claim() -> Int {
        state.withLock { state in
            if state.stopped { return Int.max }
            defer { state.next += 1 }
            return state.next
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
    }

    func record(id: String, ms: Double) {
        state.withLock { $0.taken.append((id, ms)) }
    }

    var all: [(id: String, ms: Double)] {
        state.withLock { $0.taken }
    }
}
