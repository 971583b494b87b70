import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// Writes each live agent's last iteration and impedance on an interval, and once more at
/// shutdown, so a restarted lead still refuses replays and shows the last known figures.
struct CheckpointService: Service {
    let registry: AgentRegistry
    let writer: StoreWriter
    let interval: Duration
    let counter: CheckpointCounter
    /// Its write budget stretches the interval when the lead writes ahead of it.
    let node: NodeState?

    func run() async throws {
        // The first pass only schedules: a checkpoint at start would write what was just read.
        let scheduled = Mutex(false)
        await runWhenDue(doorbell: Doorbell()) {
            if scheduled.withLock({ $0 }) { checkpoint() }
            scheduled.withLock { $0 = true }
            let now = Clock.monotonicNow()
            let stretch = node?.writeBudget.checkpointStretch(at: now) ?? 1
            let wait: Duration = interval * stretch
            return now + wait
        }
        // Committed by the writer's final commit: it stops after this service.
        checkpoint()
    }

    func checkpoint() {
        let due = registry.dueCheckpoints(at: Clock.monotonicNow(), nowWallMs: Clock.wallMilliseconds())
        guard !due.isEmpty else { return }
        writer.enqueue { connection in
            for checkpoint in due {
                try AgentStore.upsert(checkpoint, in: connection)
            }
        }
        counter.increment()
    }
}

final class CheckpointCounter: Sendable {
    private let value = Mutex(0)

    func increment() {
        value.withLock { $0 += 1 }
    }

    var count: Int {
        value.withLock { $0 }
    }
}
