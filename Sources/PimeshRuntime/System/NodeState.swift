import Logging
import PimeshCore
import ServiceLifecycle
import Synchronization

/// The node's latest readings and impedance, refreshed by `NodeProbeService`.
public final class NodeState: Sendable {
    private let current: Mutex<(NodeReadings, NodeImpedance)>

    public init(readings: NodeReadings) {
        current = Mutex((readings, NodeImpedance(readings: readings)))
    }

    public func update(_ readings: NodeReadings) {
        let impedance = NodeImpedance(readings: readings)
        current.withLock { $0 = (readings, impedance) }
    }

    public var latest: (readings: NodeReadings, impedance: NodeImpedance) {
        current.withLock { $0 }
    }
}

struct NodeProbeService: Service {
    let probe: NodeProbe
    let state: NodeState
    let interval: Duration

    func run() async throws {
        await repeatUntilGracefulShutdown(every: interval) { state.update(probe.read()) }
    }
}
