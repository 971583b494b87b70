import Glibc
import Hummingbird
import Logging
import NIOCore
import PimeshAgent
import PimeshCore
import PimeshLED
import PimeshRelease
import PimeshServer
import PimeshSnapshot
import PimeshStore
import PimeshSystem
import ServiceLifecycle
import UnixSignals

/// The cluster lead: opens the store, loads the registry, binds the heartbeat listener and
/// the API, and runs them as one service group until SIGTERM or SIGINT. Its caller ignores
/// SIGHUP before anything slow (`pimesh run` does, first thing): a SIGHUP is a reload
/// (ReloadOnHangup), and one sent while the lead starts must not end it. Children get the
/// default back (CSpawn resets every signal).
public struct Lead: Sendable {
    public let config: LeadConfig
    public let logger: Logger
    public let environment: [String: String]
    public let releaseRefused: String?

    /// `releaseRefused`: why the release `current` names was not run (`ReleaseLauncher`), made
    /// an event, an audit row and a field of lead.json so that `pimesh update status` shows it.
    public init(config: LeadConfig, logger: Logger, environment: [String: String], releaseRefused: String? = nil) {
        self.releaseRefused = releaseRefused
        self.config = config
        self.logger = logger
        self.environment = environment
    }

    /// The agents' RAM budget: as configured, else 60 % of the Pi's memory (the lead, the OS and
    /// the page cache keep the rest); 0 turns it off.
    /// `/etc/pimesh/agents.d` → `/etc/pimesh`.
    static func directory(of path: String) -> String {
        let trimmed = path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    static func incidentSettings(_ config: LeadConfig, directory: String) -> IncidentService.Settings {
        var settings = IncidentService.Settings(directory: directory)
        settings.book.observationWindow = .seconds(config.incidents.observationWindowS)
        settings.triggers.massFailureSustain = .seconds(config.incidents.massFailureSustainS)
        return settings
    }

    static func ramBudget(configuredMB: Int?, memoryTotal: UInt64?) -> UInt64? {
        if let configuredMB { return configuredMB > 0 ? UInt64(configuredMB) << 20 : nil }
        return memoryTotal.map { $0 / 10 * 6 }
    }

    @_optimize(size)  // cold: sets the lead up once; its services run in their own code (the 25 MB budget)
    public func run() async throws {
        let started = Clock.monotonicNow()
        CodePages.adviseRandomAccess()
        let dataDir = config.dataDir
        let runDir = config.resolvedRunDir
        try PrivateFiles.prepare(dataDir: dataDir, runDir: runDir, logger: logger)
        let lock = try DataDirLock(dataDir: dataDir)
        try PortCheck.ensureFree(what: "API", host: config.api.host, port: config.api.port, udp: false)
        try PortCheck.ensureFree(what: "heartbeat", host: config.heartbeat.host, port: config.heartbeat.port, udp: true)
        defer { withExtendedLifetime(lock) {} }
        for secret in [LeadEndpoint.tokenFileName, LeadEndpoint.joinTokenFileName, NodeKey.fileName] {
            try PrivateFiles.checkSecret(dataDir + "/" + secret)
        }
        // Before the check for a lost database: a start cut short mid-restore has none in place.
        let restoredAfterRollback = try MigrationRollback.restoreIfMarked(dataDir: dataDir, knownSchema: Schema.newest) {
            // systemd's start timeout (90 s by default) could end a restore on an SD card midway.
            SystemdNotifier(environment: environment).notify("EXTEND_TIMEOUT_USEC=900000000")
            self.logger.warning("restoring the snapshot taken before a release that migrated the database was rolled back")
        }
        try LostDatabase.check(dataDir: dataDir)
        let tokens = try LeadTokens(dataDir: dataDir)
        Self.raiseDescriptorLimit(logger: logger)

        let database = try Database(path: dataDir + "/pimesh.db")
        // Made at first start, so the node's identity upstream exists before any snapshot; after
        // the database, so that a node key always means a database was made (LostDatabase).
        let nodeKey = try NodeKey.loadOrCreate(dataDir: dataDir)
        let store = AgentStore(database: database)
        let supervision = config.supervision
        let registry = AgentRegistry(
            settings: .init(
                staleAfter: .milliseconds(config.heartbeat.staleAfterMs),
                admission: .init(maxClockSkewMs: Int64(config.heartbeat.maxClockSkewMs)),
                health: .init(
                    phi: .init(
                        threshold: supervision.phiThreshold, expectedIntervalMs: Double(config.heartbeat.intervalMs),
                        minimumStdDevMs: Double(supervision.minStdDevMs), acceptablePauseMs: Double(supervision.acceptablePauseMs)),
                    watchdog: .init(
                        minimumStagnationMs: Double(supervision.hangAfterMs), minimumLoopMs: Double(supervision.loopAfterMs)),
                    startGrace: .milliseconds(supervision.startGraceMs),
                    pendingGrace: AgentHealth.Settings.pendingGrace(
                        heartbeatInterval: .milliseconds(config.heartbeat.intervalMs), staleAfter: .milliseconds(config.heartbeat.staleAfterMs)),
                    expireAfter: .seconds(config.agents.expireAfterS))))
        let checkpoints = try store.loadCheckpoints()
        let agentRows = try store.loadAgents()
        for row in agentRows {
            try registry.add(row, lastIteration: checkpoints[row.id]?.lastIteration)
        }
        logger.info("registry loaded", metadata: ["agents": "\(registry.count)", "database": "\(database.path)"])

        let writer = StoreWriter(
            database: database, commitInterval: .milliseconds(config.store.commitIntervalMs),
            durableDelay: .milliseconds(config.store.durableCommitDelayMs),
            slowCommit: environment["PIMESH_FAULT_SLOW_COMMIT_MS"].flatMap(Int.init).map { .milliseconds($0) }, logger: logger)
        if let slow = environment["PIMESH_FAULT_SLOW_COMMIT_MS"] {
            logger.warning("fault injection: every store commit takes \(slow) ms longer (PIMESH_FAULT_SLOW_COMMIT_MS)")
        }
        let probe = NodeProbe(procRoot: config.node.procRoot, sysRoot: config.node.sysRoot)
        let node = NodeState(readings: probe.read(), writeBudgetBytesPerDay: UInt64(config.store.writeBudgetMBPerDay) << 20)
        let ready = ReadyFlag()
        let checkpointCounter = CheckpointCounter()
        let metrics = LeadMetrics()
        let kpis = KPIRecorder()
        let nodeHealth = NodeHealth()
        let audit = try AuditLog.open(writer: writer, key: nodeKey, headEveryRows: Int64(config.audit.headEveryRows), logger: logger)
        // Read before this start adds rows: the last the previous lead wrote.
        let steppedWhileDownMs = AuditLifecycle.clockStepSinceLastLead(audit, store: AuditStore(database: database))
        AuditLifecycle.started(audit, configFile: config.configFile, configBytes: config.configFile.flatMap { try? FileIO.read(path: $0) })
        try AuditLifecycle.restored(audit, store: AuditStore(database: database))
        let events = HealthEventLog(audit: audit)
        if let releaseRefused { events.append(kind: "release_refused", agent: nil, detail: releaseRefused) }
        if let restoredAfterRollback {
            events.append(kind: "database_restored", agent: nil, detail: restoredAfterRollback)
            logger.warning("\(restoredAfterRollback)")
        }
        if let steppedWhileDownMs {
            let detail = "the wall clock stepped \(ClockStepDetector.describe(stepMs: steppedWhileDownMs)) while no lead ran (same boot): "
                + "what was stored before is aged without the step"
            events.append(kind: "clock_stepped", agent: nil, detail: detail)
            logger.warning("\(detail)")
        }
        // Stored wall-clock times (queued tasks, open conflicts and incidents) are in the time
        // base before that step: they are aged against the wall clock as it would read without it.
        let restoreWallMs = Clock.wallMilliseconds().saturatingSubtract(steppedWhileDownMs ?? 0)
        let incidents = try IncidentService.open(
            settings: Self.incidentSettings(config, directory: dataDir + "/incidents"), writer: writer, audit: audit,
            nodeID: nodeKey.nodeID, restoreWallMs: restoreWallMs, logger: logger)
        events.observe { kind, agent, detail, atMs in incidents.noteEvent(kind: kind, agent: agent, detail: detail, atMs: atMs) }
        writer.onBatchEnd { _, failure in incidents.setIntegrity("store", failing: failure.map { "commits fail: \($0)" }) }
        let conflicts = ConflictService(
            registry: registry, writer: writer, store: ConflictStore(database: database), metrics: metrics, logger: logger)
        try conflicts.restore(nowWallMs: restoreWallMs)
        let taskStore = TaskStore(database: database)
        let tasks = TaskService(
            settings: .init(
                lease: .milliseconds(config.tasks.leaseMs), defaultTTLMs: config.tasks.defaultTTLMs, maxAttempts: config.tasks.maxAttempts,
                recentMaxBytes: config.tasks.recentRAMKB << 10, maxOpen: config.tasks.maxOpen,
                retention: TaskRetention(
                    maxAgeMs: Int64(config.tasks.retainFinishedS) * 1000, maxFinished: config.tasks.retainFinishedCount,
                    maxBytes: config.tasks.maxStoredMB << 20),
                workDatagrams: config.tasks.workDatagrams, linkStaleAfter: .milliseconds(config.heartbeat.staleAfterMs)),
            registry: registry,
            writer: writer, store: taskStore, kpis: kpis, metrics: metrics, conflicts: conflicts, logger: logger, health: nodeHealth)
        tasks.reportOutcomes { capability, agent, succeeded, error in
            incidents.recordOutcome(capability: capability, agent: agent, succeeded: succeeded, error: error)
        }
        tasks.restoreTotals(try taskStore.totals(), newestFinishedAtMs: try taskStore.newestFinishedAtMs())
        let unfinished = try taskStore.loadOpen()
        tasks.restore(unfinished, nowWallMs: restoreWallMs)
        if !unfinished.isEmpty {
            logger.info("unfinished tasks requeued", metadata: ["tasks": "\(unfinished.count)"])
        }
        let coordination = config.coordination
        let gather = GatherService(
            settings: .init(
                arrivalWindow: .milliseconds(coordination.arrivalWindowMs), bucket: .milliseconds(coordination.bucketMs),
                minimumResponseRatio: coordination.minimumResponseRatio, timeout: .milliseconds(coordination.timeoutMs),
                quorum: .init(
                    requiredReadyRate: coordination.requiredReadyRate, maxConflictRate: coordination.maxConflictRate,
                    maxTransitRate: coordination.maxTransitRate)),
            registry: registry, tasks: tasks, conflicts: conflicts, writer: writer, kpis: kpis, metrics: metrics, logger: logger)
        let state = LeadState(
            config: config, registry: registry, writer: writer, node: node, ready: ready, checkpoints: checkpointCounter, tasks: tasks,
            gather: gather, conflicts: conflicts, kpis: kpis, metrics: metrics, health: nodeHealth, events: events, audit: audit)
        let supervisor = try Supervisor(
            settings: .init(
                agentsDir: supervision.agentsDir ?? dataDir + "/agents.d", runDir: runDir, dataDir: dataDir,
                logMaxBytes: supervision.logMaxKB * 1024, logRateBytesPerSecond: supervision.logRateKBPerS * 1024, stopTimeout: .seconds(supervision.stopTimeoutS),
                procRoot: config.node.procRoot, cgroupRoot: supervision.cgroupRoot, procSelfCgroup: config.node.procRoot + "/self/cgroup",
                environment: environment,
                registrationRefusal: { state.registrations.isFull(registered: { registry.count }) ? state.registrations.fullMessage : nil }),
            registry: registry, events: events, health: nodeHealth, ready: ready, logger: logger,
            heartbeatEndpoint: { state.heartbeat }, apiEndpoint: { state.api })
        try supervisor.prepare(rows: agentRows, database: database)
        for manifest in supervisor.loadedManifests().values.sorted(by: { $0.name < $1.name }) {
            AuditLifecycle.manifest(audit, manifest, change: "loaded")
        }
        state.supervisor = supervisor
        state.incidents = incidents
        let agentsDir = supervision.agentsDir ?? dataDir + "/agents.d"
        let playbooks = PlaybookRunner(
            settings: .init(
                directory: config.incidents.playbooksDir ?? Self.directory(of: agentsDir) + "/playbooks.d",
                minRunning: config.incidents.emergencyMinRunning),
            state: state, logger: logger)
        let uploadTarget = try config.upload.target(environment: environment)
        let putTransport = HelperPut(environment: environment) { [logger] milliseconds, peakRSSKiB in
            logger.debug("transfer helper done", metadata: ["ms": "\(milliseconds)", "peak_rss_kib": "\(peakRSSKiB)"])
        }
        var pusher: IncidentPusher? = nil
        if case .coordinator = uploadTarget {
            pusher = IncidentPusher(uploader: SnapshotUploader(target: uploadTarget!, transport: putTransport), key: nodeKey, logger: logger)
        }
        incidents.onChange { [pusher] open, resolved in
            playbooks.consider(open: open, resolved: resolved)
            pusher?.offer(open + resolved)
        }
        state.playbooks = playbooks
        let reloader = Reloader(
            configFile: config.configFile, startupKeys: try config.configFile.map(Reloader.flattenedKeys(of:)) ?? [:],
            supervisor: supervisor, playbooks: playbooks, audit: audit, logger: logger)
        state.reloader = reloader
        let snapshots = SnapshotService(
            maker: SnapshotMaker(
                databasePath: database.path, stagingDirectory: runDir,
                spool: try SnapshotSpool(
                    directory: dataDir + "/spool", maxCount: config.snapshots.spoolMaxCount,
                    maxBytes: UInt64(config.snapshots.spoolMaxMB) << 20),
                key: nodeKey, nodeScore: { node.latest.impedance.score }),
            interval: config.snapshots.intervalS > 0 ? .seconds(config.snapshots.intervalS) : nil, audit: audit, logger: logger)
        state.snapshots = snapshots
        snapshots.onIntegrity { problem in incidents.setIntegrity("snapshot", failing: problem) }
        let monitor = HealthMonitor(
            settings: .init(
                tick: .milliseconds(supervision.tickMs), unresponsiveRestartAfter: .milliseconds(supervision.healAfterMs),
                workStealing: supervision.workStealing,
                ramBudgetBytes: Self.ramBudget(configuredMB: supervision.ramBudgetMB, memoryTotal: node.latest.readings.memoryTotalBytes)),
            registry: registry, tasks: tasks, supervisor: supervisor, events: events, health: nodeHealth, node: node, logger: logger,
            incidents: incidents, kpis: kpis, snapshots: snapshots, conflicts: conflicts, prober: LivenessProber(registry: registry))
        let notifier = SystemdNotifier(environment: environment)

        let apiSocket = config.api.unixSocket ? runDir + "/api.sock" : nil
        let heartbeatSocket = config.heartbeat.unixSocket ? runDir + "/heartbeat.sock" : nil
        let leadFile = LeadFilePublisher(path: dataDir + "/" + LeadEndpoint.fileName, incidents: incidents, logger: logger)
        let config = config
        let logger = logger
        let readiness = ReadinessGate(expectUnixAPI: apiSocket != nil, readyFlag: ready) { apiPort, heartbeatPort in
            let heartbeat = HeartbeatEndpoint(
                host: config.heartbeat.host, port: heartbeatPort, unixSocket: heartbeatSocket, intervalMs: config.heartbeat.intervalMs)
            state.heartbeat = heartbeat
            state.api = .init(host: config.api.host, port: apiPort, unixSocket: nil)
            let endpoint = LeadEndpoint(
                pid: getpid(), version: PimeshVersion.current, startedAtMs: Clock.wallMilliseconds(),
                api: .init(host: config.api.host, port: apiPort, unixSocket: apiSocket), heartbeat: heartbeat,
                release: ReleaseStore.runningRelease(dataDir: dataDir), releaseRefused: releaseRefused)
            if let bytes = try? APICoding.encode(endpoint, pretty: true) { leadFile.publish(bytes) }
            notifier.notify("READY=1")
            // Start-up code (argument parsing, migrations, binding) is not needed again, nor
            // the heap that loading the registry and the config used for a moment. An interval
            // of 0 (a debugger's breakpoints would go with the pages) turns this off too.
            if config.node.codeTrimIntervalS > 0 { CodeTrimService.trim() }
            logger.info(
                "lead ready",
                metadata: [
                    "api": "\(config.api.host):\(apiPort)", "heartbeat": "\(config.heartbeat.host):\(heartbeatPort)",
                    "agents": "\(registry.count)",
                    "start_ms": "\(Int((Clock.monotonicNow() - started).milliseconds.rounded()))",
                ])
        }

        var ledDriver: LEDDriver?
        do {
            if let built = try LEDConfiguration.build(config, now: { Clock.monotonicNow() }) {
                let driver = LEDDriver(
                    backend: built.backend, assignments: built.assignments, refresh: .milliseconds(config.leds.refreshMs),
                    logger: logger, now: { Clock.monotonicNow() }, status: { state.ledStatus() })
                ledDriver = driver
                state.leds.attach(driver, note: built.note)
                logger.info(
                    "LEDs", metadata: ["backend": "\(built.backend.name)", "how": "\(built.note)",
                                       "roles": "\(built.assignments.map { $0.name == $0.role.rawValue ? $0.name : "\($0.role.rawValue) on \($0.name)" }.joined(separator: ", "))"])
            } else {
                state.leds.attach(nil, note: "leds.backend is off")
            }
        } catch {
            // The LEDs are a convenience: without them the lead still leads.
            state.leds.attach(nil, note: "the LEDs could not be started: \(error)")
            logger.error("the LEDs could not be started; running without them", metadata: ["error": "\(error)"])
        }

        let router = APIRouter.build(state: state, tokens: tokens)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: writer, serviceName: "store-writer"),
            .init(service: AuditLifecycle(audit: audit, retainDays: config.audit.retainDays, hasUpstream: uploadTarget != nil, logger: logger), serviceName: "audit-lifecycle"),
            .init(service: tasks, serviceName: "tasks"),
            .init(
                service: CheckpointService(
                    registry: registry, writer: writer, interval: .seconds(config.store.checkpointIntervalS), counter: checkpointCounter, node: node),
                serviceName: "checkpoints"),
            .init(
                service: NodeProbeService(probe: probe, state: node, interval: .milliseconds(config.node.probeIntervalMs)) { [tasks, writer] readings in
                    readings.taskQueueLatencyMs = NodeReadings.median(Array(tasks.queueLatencies(now: Clock.monotonicNow()).values))
                    readings.storageCommitP99Ms = writer.stats.recentCommitMs.percentile(99)
                },
                serviceName: "node-probe"),
            .init(
                service: HeartbeatListener(
                    registry: registry, tasks: tasks, host: config.heartbeat.host, port: config.heartbeat.port, unixSocketPath: heartbeatSocket,
                    readiness: readiness, logger: logger),
                serviceName: "heartbeat-listener"),
            .init(
                service: Application(
                    router: router, server: RequestDeadline.http1(idleTimeoutS: config.api.idleTimeoutS, requestTimeoutS: config.api.idleTimeoutS),
                    configuration: .init(
                        address: .hostname(config.api.host, port: config.api.port), serverName: "pimesh",
                        availableConnectionsDelegate: .maximum(config.api.maxConnections, logger: logger)),
                    onServerRunning: { channel in await readiness.apiBound(port: channel.localAddress?.port ?? config.api.port) },
                    logger: logger),
                serviceName: "api"),
        ]
        if let apiSocket {
            unlink(apiSocket)
            services.append(
                .init(
                    service: Application(
                        router: router, server: RequestDeadline.http1(idleTimeoutS: config.api.idleTimeoutS, requestTimeoutS: config.api.idleTimeoutS),
                        configuration: .init(
                            address: .unixDomainSocket(path: apiSocket), serverName: "pimesh",
                            availableConnectionsDelegate: .maximum(config.api.maxConnections, logger: logger)),
                        onServerRunning: { _ in
                            chmod(apiSocket, 0o660)
                            await readiness.apiUnixBound()
                        },
                        logger: logger),
                    serviceName: "api-unix"))
        }
        services.append(.init(service: monitor, serviceName: "health-monitor"))
        services.append(.init(service: leadFile, serviceName: "lead-file"))
        services.append(.init(service: snapshots, serviceName: "snapshots"))
        if let pusher { services.append(.init(service: pusher, serviceName: "incident-push")) }
        if let target = uploadTarget {
            services.append(
                .init(
                    service: UploadService(
                        spool: snapshots.maker.spool, uploader: SnapshotUploader(target: target, transport: putTransport),
                        backoff: RetryBackoff(initial: .milliseconds(config.upload.retryInitialMs), maximum: .seconds(config.upload.retryMaxS)),
                        logger: logger, onConfirmed: { manifest in manifest.auditHead.map(audit.upstreamConfirmed) }),
                    serviceName: "upload"))
            logger.info("snapshots go upstream", metadata: ["target": "\(config.upload.target)", "name": "\(target.name)"])
        }
        services.append(.init(service: supervisor, serviceName: "supervisor"))
        // Trapped before the group starts, and so before READY=1: a `systemctl reload` sent
        // right after the start is kept for the service, not dropped by the ignore.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        services.append(.init(service: ReloadOnHangup(reloader: reloader, hangups: hangups), serviceName: "reload-on-hangup"))
        if let ledDriver {
            services.append(.init(service: ledDriver, serviceName: "leds"))
        }
        if config.node.codeTrimIntervalS > 0 {
            services.append(
                .init(
                    service: CodeTrimService(interval: .seconds(config.node.codeTrimIntervalS), agentCount: { [registry] in registry.count }),
                    serviceName: "code-trim"))
        }
        if let interval = notifier.watchdogInterval {
            services.append(.init(service: WatchdogService(notifier: notifier, interval: interval), serviceName: "watchdog"))
        }
        services.append(.init(service: DrainOnShutdown(tasks: tasks, gather: gather, notifier: notifier), serviceName: "drain-on-shutdown"))
        var groupConfiguration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Past the deadline the services are cancelled; the store writer still makes its final
        // commit (in a task of its own, not cancellable). No cancellation limit: past one,
        // ServiceLifecycle traps, and systemd's TimeoutStopSec is the backstop instead.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(config.stopDeadlineS)
        let group = ServiceGroup(configuration: groupConfiguration)
        defer {
            if ready.isReady { FileIO.remove(leadFile.path) }
            if let apiSocket { unlink(apiSocket) }
            if let heartbeatSocket { unlink(heartbeatSocket) }
        }
        try await group.run()
        logger.info("lead stopped", metadata: ["agents": "\(registry.count)"])
    }

    /// Two API servers of `api.max_connections` each, the agents' FIFOs and pidfds need more
    /// descriptors than the usual soft limit of 1,024: raise it to the hard limit (the unit sets
    /// LimitNOFILE), at most 65,536.
    static func raiseDescriptorLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = min(limit.rlim_max, 65_536)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = wanted
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("cannot raise the descriptor limit", metadata: ["error": "\(String(cString: strerror(errno)))"])
        }
    }
}
