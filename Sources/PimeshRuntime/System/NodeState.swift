import Logging
import PimeshAgent
import PimeshCore
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// The node's latest readings and impedance, refreshed by `NodeProbeService`, and the lead's
/// own writes against its daily budget.
public final class NodeState: Sendable {
    private let current: Mutex<(NodeReadings, NodeImpedance)>
    private let budget: Mutex<WriteBudget>

    public init(readings: NodeReadings, writeBudgetBytesPerDay: UInt64 = 0) {
        current = Mutex((readings, NodeImpedance(readings: readings)))
        budget = Mutex(WriteBudget(bytesPerDay: writeBudgetBytesPerDay))
    }

    public func update(_ readings: NodeReadings, at now: Instant = Clock.monotonicNow()) {
        if let written = readings.leadWrittenBytes { budget.withLock { $0.record(writtenBytes: written, at: now) } }
        let impedance = NodeImpedance(readings: readings)
        current.withLock { $0 = (readings, impedance) }
    }

    public var latest: (readings: NodeReadings, impedance: NodeImpedance) {
        current.withLock { $0 }
    }

    public var writeBudget: WriteBudget {
        budget.withLock { $0 }
    }
}

struct NodeProbeService: Service {
    let probe: NodeProbe
    let state: NodeState
    let interval: Duration
    /// What the lead knows of itself beside /proc and /sys: its task queue, its store's commits.
    let addOwnReadings: @Sendable (inout NodeReadings) -> Void

    func run() async throws {
        await repeatUntilGracefulShutdown(every: interval) {
            var readings = probe.read()
            addOwnReadings(&readings)
            state.update(readings)
        }
    }
}
