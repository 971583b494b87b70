import Glibc
import NIOPosix
import PimeshAgent
import PimeshCore
import Synchronization

/// One simulated agent in a process of its own, as a manifest starts it (`pimesh sim-agent`): its
/// identity comes from the environment the supervisor sets, it heartbeats at the lead's
/// interval and works on tasks for the time its class predicts. `behaviour` can make it
/// misbehave on purpose so that the lead's watchdog can be seen at work.
public struct SimulatedAgent: Sendable {
    public enum Behaviour: String, Sendable, CaseIterable {
        case normal
        /// Takes a task and stops making progress while it keeps heartbeating: HANG.
        case hang
        /// Takes a task and keeps making progress without ever finishing it: LOOP.
        case loop
    }

    public var credentials: AgentCredentials
    public var dataDir: String
    public var failRate: Double
    public var behaviour: Behaviour

    public init(credentials: AgentCredentials, dataDir: String, failRate: Double, behaviour: Behaviour) {
        self.credentials = credentials
        self.dataDir = dataDir
        self.failRate = failRate
        self.behaviour = behaviour
    }

    final class Counters: Sendable {
        let progress = Atomic<UInt64>(0)
        let held = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
    }

    /// Runs until the task is cancelled (SIGTERM through the caller's service group).
    public func run() async throws {
        let counters = Counters()
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        defer {
            counters.stop.store(true, ordering: .relaxed)
            pool.shutdownGracefully { _ in }
        }
        let agent = PimeshAgent(credentials: credentials)
        pool.submit { [self] _ in
            agent.serve(dataDir: dataDir, waitMs: 10_000, shouldStop: { counters.stop.load(ordering: .relaxed) }) { item in
                work(on: item, counters: counters)
            }
        }
        try await agent.heartbeat {
            PimeshAgent.Report(
                state: .ready, queueDepth: counters.held.load(ordering: .relaxed), progress: counters.progress.load(ordering: .relaxed))
        }
    }

    /// Works in 20 ms slices, each a unit of progress, for what `estimate_processing` predicts.
    private func work(on item: WorkItem, counters: Counters) -> PimeshAgent.Reply {
        guard item.kind == .task else { return .answer(.ready, "\(credentials.name): ok") }
        counters.held.add(1, ordering: .relaxed)
        defer { counters.held.subtract(1, ordering: .relaxed) }
        var rng = SystemRandomNumberGenerator()
        let total = credentials.agentClass.estimateProcessingMs(payloadWeight: item.weight, queueDepth: 0)
            * Double.random(in: 0.95...1.05, using: &rng)
        var elapsed = 0.0
        while behaviour == .loop || elapsed < total {
            if counters.stop.load(ordering: .relaxed) { break }
            let slice = behaviour == .loop ? 20 : min(20, total - elapsed)
            Self.sleep(milliseconds: slice)
            elapsed += slice
            if behaviour == .hang {
                // Holds the task, heartbeats on, makes no progress: what a deadlock looks like.
                while !counters.stop.load(ordering: .relaxed) { Self.sleep(milliseconds: 100) }
                break
            }
            counters.progress.add(1, ordering: .relaxed)
        }
        if Double.random(in: 0..<1, using: &rng) < failRate { return .failed(error: "simulated failure (--fail-rate \(failRate))") }
        return .succeeded(result: "done by \(credentials.name) (pid \(getpid()))")
    }

    static func sleep(milliseconds: Double) {
        var request = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int(milliseconds.truncatingRemainder(dividingBy: 1000) * 1_000_000))
        _ = nanosleep(&request, nil)
    }
}
