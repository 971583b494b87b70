import Glibc
import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem
import Synchronization

/// What the API handlers read and change: the shell's shared state, wired by `Lead`.
final class LeadState: Sendable {
    let config: LeadConfig
    let registry: AgentRegistry
    let writer: StoreWriter
    let node: NodeState
    let ready: ReadyFlag
    let checkpoints: CheckpointCounter
    let tasks: TaskService
    let gather: GatherService
    let conflicts: ConflictService
    let kpis: KPIRecorder
    let metrics: LeadMetrics
    let startedAt: Instant
    let leds = LEDPanel()
    let health: NodeHealth
    let events: HealthEventLog
    /// nil only in tests that build a state without a database of their own.
    let audit: AuditLog?
    let registrations: RegistrationGate
    private let supervisorSlot = Mutex<Supervisor?>(nil)
    private let incidentsSlot = Mutex<IncidentService?>(nil)
    private let snapshotSlot = Mutex<SnapshotService?>(nil)
    private let playbooksSlot = Mutex<PlaybookRunner?>(nil)
    private let reloaderSlot = Mutex<Reloader?>(nil)
    private let heartbeatEndpoint = Mutex<HeartbeatEndpoint?>(nil)
    private let apiEndpoint = Mutex<LeadEndpoint.API?>(nil)

    init(
        config: LeadConfig, registry: AgentRegistry, writer: StoreWriter, node: NodeState, ready: ReadyFlag,
        checkpoints: CheckpointCounter, tasks: TaskService, gather: GatherService, conflicts: ConflictService, kpis: KPIRecorder,
        metrics: LeadMetrics, health: NodeHealth = NodeHealth(), events: HealthEventLog = HealthEventLog(), audit: AuditLog? = nil
    ) {
        self.audit = audit
        self.health = health
        self.events = events
        self.config = config
        self.registry = registry
        self.writer = writer
        self.node = node
        self.ready = ready
        self.checkpoints = checkpoints
        self.tasks = tasks
        self.gather = gather
        self.conflicts = conflicts
        self.kpis = kpis
        self.metrics = metrics
        self.startedAt = Clock.monotonicNow()
        registrations = RegistrationGate(maxRegistered: config.agents.maxRegistered, perSecond: config.agents.registrationsPerS, burst: config.agents.registrationBurst)
    }

    /// Set once by `Lead`.
    var incidents: IncidentService? {
        get { incidentsSlot.withLock { $0 } }
        set { incidentsSlot.withLock { $0 = newValue } }
    }

    /// Set once by `Lead` with the supervisor.
    var reloader: Reloader? {
        get { reloaderSlot.withLock { $0 } }
        set { reloaderSlot.withLock { $0 = newValue } }
    }

    /// Set once by `Lead` after the supervisor is built (it needs this state's heartbeat endpoint).
    var supervisor: Supervisor? {
        get { supervisorSlot.withLock { $0 } }
        set { supervisorSlot.withLock { $0 = newValue } }
    }

    /// Set once by `Lead`: the incident playbooks.
    var playbooks: PlaybookRunner? {
        get { playbooksSlot.withLock { $0 } }
        set { playbooksSlot.withLock { $0 = newValue } }
    }

    var snapshots: SnapshotService? {
        get { snapshotSlot.withLock { $0 } }
        set { snapshotSlot.withLock { $0 = newValue } }
    }

    var heartbeat: HeartbeatEndpoint? {
        get { heartbeatEndpoint.withLock { $0 } }
        set { heartbeatEndpoint.withLock { $0 = newValue } }
    }

    /// The loopback API agents use with their own credential; set when it is bound.
    var api: LeadEndpoint.API? {
        get { apiEndpoint.withLock { $0 } }
        set { apiEndpoint.withLock { $0 = newValue } }
    }

    /// What `/readyz` answers. Ready means the lead can take work, which it cannot while its
    /// commits fail (a full SD card, an I/O error): every write then answers 507 or 500, and a
    /// monitor that reads 200 would not know. Back to ready at the first commit that succeeds.
    struct Readiness: Encodable, Sendable {
        var status: String
        var error: String?
        var failingForS: Double?

        var isReady: Bool { status == "ready" }
    }

    var readiness: Readiness {
        guard ready.isReady else { return Readiness(status: "starting") }
        let stats = writer.stats
        guard let failing = stats.failing, let since = stats.failingSince else { return Readiness(status: "ready") }
        let failingForS = ((Clock.monotonicNow() - since).milliseconds / 100).rounded() / 10
        return Readiness(status: "store_failing", error: "store commits fail: \(failing)", failingForS: failingForS)
    }

    @_optimize(size)  // cold: an operator's or a scrape's request, a few a minute (the 25 MB budget)
    func status() -> StatusReport {
        let now = Clock.monotonicNow()
        let (readings, impedance) = node.latest
        let memory = ProcessMemory.read() ?? ProcessMemory()
        let stats = writer.stats
        var agents = StatusReport.Agents(registry.summary(at: now))
        agents.quarantined = registry.quarantinedNames()
        agents.maxRegistered = config.agents.maxRegistered
        var report = StatusReport(
            version: PimeshVersion.current,
            pid: getpid(),
            uptimeS: ImpedanceView.round((now - startedAt).milliseconds / 1000),
            agents: agents,
            node: .init(impedance: impedance, readings: readings, writeBudget: node.writeBudget, at: now),
            heartbeats: .init(intervalMs: config.heartbeat.intervalMs, counters: registry.counters),
            rssBytes: memory.rssBytes,
            pssBytes: memory.pssBytes,
            privateAnonymousBytes: memory.anonymousBytes,
            store: .init(
                path: writer.database.path, commits: stats.commits,
                lastCommitMs: stats.lastCommitMs.map(ImpedanceView.round), checkpoints: checkpoints.count))
        report.store.freeBytes = writer.database.freeBytes
        if let failing = stats.failing, let since = stats.failingSince {
            report.store.failing = failing
            report.store.failingForS = ((now - since).milliseconds / 100).rounded() / 10
            report.store.failedBatches = stats.failedBatches
            report.store.waitingWrites = stats.waitingWrites
        }
        report.kpis = kpis.indicators.map(StatusReport.KPI.init)
        let snapshot = tasks.snapshot
        let counters = snapshot.counters
        report.tasks.submitted = counters.submitted
        report.tasks.skipped = counters.skipped
        report.tasks.queued = snapshot.open[.queued] ?? 0
        report.tasks.assigned = snapshot.open[.assigned] ?? 0
        report.tasks.running = snapshot.open[.running] ?? 0
        report.tasks.succeeded = counters.finished[.succeeded] ?? 0
        report.tasks.failed = counters.finished[.failed] ?? 0
        report.tasks.conflict = counters.finished[.conflict] ?? 0
        report.tasks.cancelled = counters.finished[.cancelled] ?? 0
        report.tasks.duplicateResults = counters.duplicateResults
        report.tasks.requeued = counters.requeued
        report.tasks.storedFinished = snapshot.storedFinished
        report.tasks.storedBytes = snapshot.storedBytes
        report.tasks.pruned = snapshot.pruned
        report.tasks.workDatagrams = snapshot.workDatagrams
        report.tasks.longPolls = snapshot.longPolls
        report.health = healthReport(now: now)
        report.audit = audit?.status
        if let incidents {
            let times = incidents.meanTimes
            report.incidents = IncidentSummary(
                open: incidents.open, resolvedByThisLead: times.resolved, meanMitigateMs: times.mitigateMs, meanResolveMs: times.resolveMs)
        }
        return report
    }

    func metricsText() -> [UInt8] {
        metrics.render(status: status(), heartbeats: registry.counters, openTasks: tasks.snapshot.open)
    }
}
