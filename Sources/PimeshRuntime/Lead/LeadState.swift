import Glibc
import PimeshAgent
import PimeshCore
import PimeshStore
import Synchronization

/// What the API handlers read and change: the shell's shared state, wired by `Lead`.
final class LeadState: Sendable {
    let config: LeadConfig
    let registry: AgentRegistry
    let writer: StoreWriter
    let node: NodeState
    let ready: ReadyFlag
    let checkpoints: CheckpointCounter
    let startedAt: Instant
    private let heartbeatEndpoint = Mutex<HeartbeatEndpoint?>(nil)

    init(config: LeadConfig, registry: AgentRegistry, writer: StoreWriter, node: NodeState, ready: ReadyFlag, checkpoints: CheckpointCounter) {
        self.config = config
        self.registry = registry
        self.writer = writer
        self.node = node
        self.ready = ready
        self.checkpoints = checkpoints
        self.startedAt = Clock.monotonicNow()
    }

    var heartbeat: HeartbeatEndpoint? {
        get { heartbeatEndpoint.withLock { $0 } }
        set { heartbeatEndpoint.withLock { $0 = newValue } }
    }

    func status() -> StatusReport {
        let now = Clock.monotonicNow()
        let (readings, impedance) = node.latest
        let memory = ProcessMemory.read() ?? ProcessMemory()
        let stats = writer.stats
        return StatusReport(
            version: PimeshRuntimeInfo.version,
            pid: PimeshRuntimeInfo.pid,
            uptimeS: ImpedanceView.round((now - startedAt).milliseconds / 1000),
            agents: .init(registry.summary(at: now)),
            node: .init(impedance: impedance, readings: readings),
            heartbeats: .init(intervalMs: config.heartbeat.intervalMs, counters: registry.counters),
            rssBytes: memory.rssBytes,
            pssBytes: memory.pssBytes,
            privateAnonymousBytes: memory.anonymousBytes,
            store: .init(
                path: writer.database.path, commits: stats.commits,
                lastCommitMs: stats.lastCommitMs.map(ImpedanceView.round), checkpoints: checkpoints.count))
    }
}

public enum PimeshRuntimeInfo {
    public static let version = "0.1.0"

    static var pid: Int32 {
        getpid()
    }
}
