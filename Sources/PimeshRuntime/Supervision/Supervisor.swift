import Crypto
import CSpawn
import Glibc
import Logging
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// Runs the agents named in `agents.d/*.json`: starts the supervised ones once the lead is
/// ready, hands each its identity through the environment, sees each exit at once through the
/// reaper, restarts by policy with backoff, freezes and thaws them, and runs attached agents'
/// heal commands. What to heal and when is the health monitor's decision; this is the hands.
final class Supervisor: Service, Sendable {
    struct Settings: Sendable {
        var agentsDir: String
        var runDir: String
        var dataDir: String
        var logMaxBytes: Int = 256 * 1024
        var logRateBytesPerSecond: Int = 256 * 1024
        var stopTimeout: Duration = .seconds(5)
        var procRoot = "/proc"
        var cgroupRoot = "/sys/fs/cgroup"
        var procSelfCgroup = "/proc/self/cgroup"
        /// PATH, HOME, LANG… of the lead, passed on to the agents.
        var environment: [String: String] = [:]
        var tick: Duration = .milliseconds(20)
        /// Why one more agent may not be registered (`agents.max_registered`, the registration
        /// gate's rule), or nil: a new supervised manifest past it is refused, as a registration is.
        var registrationRefusal: @Sendable () -> String? = { nil }
    }

    struct Managed: Sendable {
        var manifest: AgentManifest
        var id: AgentID
        var secret: String
        var pid: pid_t?
        /// The process's start time (/proc/PID/stat), which with the pid identifies it.
        var processStartTime: UInt64?
        /// Digest of what it was started with (SupervisedRecords).
        var launch: String?
        /// Taken over from an earlier lead: not the lead's child.
        var adopted = false
        /// SIGKILL it if it still runs then (a stop the lead asked for with SIGTERM).
        var killDeadline: Instant?
        var startedAt: Instant?
        var backoff: RestartBackoff
        var restartAt: Instant?
        var restarts = 0
        var starts = 0
        var lastExit: String?
        var frozen = false
        var awaiting: HealingAction?
        var awaitingReason: String?
        /// When the step began to wait for an operator: the L2 response time runs from here.
        var awaitingSince: Instant?
        /// The lead killed it to start it again (heal), so its exit is not a crash.
        var restartRequested = false
        /// The health monitor killed it as hung (heartbeats or its liveness probe): its start
        /// again goes through the restart backoff, so an agent that is unresponsive every time
        /// it starts is backed off and given up like one that crashes.
        var healedAutomatically = false
        /// `restartAt` was set by the restart policy after an exit (an L0 step, timed when it
        /// starts), not by an operator, a heal or a reload.
        var restartByPolicy = false
        var memoryBytes: UInt64?
        var healPID: pid_t?
        var healDeadline: Instant?
        /// Stopped by an operator: not started, not restarted, until started (kept across lead
        /// restarts in StoppedAgents).
        var stopped = false
        /// A reload found its manifest gone: it is stopped, then forgotten.
        var removed = false
    }

    struct State: Sendable {
        var agents: [String: Managed] = [:]
        var byPID: [pid_t: String] = [:]
        var refused: [ConfigError] = []
        var shuttingDown = false
        /// Recorded agents left running whose manifest was refused this time: neither adopted
        /// nor stopped (a typo must not kill a running agent), and kept in the record.
        var unclaimed: [SupervisedRecords.Entry] = []
        /// Agents whose process exists and waits to run its program until it is recorded: every
        /// record write (a freeze's from the API, too) includes them until `start` takes them in.
        var starting: [String: SupervisedRecords.Entry] = [:]
    }

    let settings: Settings
    let registry: AgentRegistry
    let events: HealthEventLog
    let health: NodeHealth
    let logger: Logger
    let ready: ReadyFlag
    let heartbeatEndpoint: @Sendable () -> HeartbeatEndpoint?
    let apiEndpoint: @Sendable () -> LeadEndpoint.API?
    let reaper = ChildReaper()
    /// Rung whenever a restart or a deadline is set, so the event-driven loop sees it at once.
    let doorbell = Doorbell()
    /// The supervised-records file is out of date: the supervision loop writes it. Exits are
    /// handled on the reaper's thread, where two fsyncs per exit would hold up the next one
    /// (three agents killed at once).
    /// (Boxed: an Atomic stored in this class, whose init can throw, crashes the 6.3 optimizer.)
    private let recordsStale = RecordsFlag()
    let logs: AgentLogPump
    let cgroups: AgentCgroups?
    /// `pimesh-agent` where it exists; nil: agents without a `user` run as the lead does.
    let defaultIdentity = ProcessIdentity.defaultForAgents()
    let state = Mutex(State())
    let records: SupervisedRecords
    let stoppedList: StoppedAgents
    /// Set by `prepare`: a reload registers the agents of new manifests in the same store.
    let database = Mutex<Database?>(nil)
    /// Serialises record writes, so that the file never goes back to an older state.
    private let recordWrites = Mutex(())
    /// Each agent's manifest in force and the one before it: what a rollback puts back.
    let history: ManifestHistory
    /// agents.d as `adoptAttached` reads it every 2 s: parsed again only when a file changed.
    private let manifestFiles: ManifestDirectoryCache

    init(
        settings: Settings, registry: AgentRegistry, events: HealthEventLog, health: NodeHealth, ready: ReadyFlag, logger: Logger,
        heartbeatEndpoint: @escaping @Sendable () -> HeartbeatEndpoint?,
        apiEndpoint: @escaping @Sendable () -> LeadEndpoint.API? = { nil }
    ) throws {
        self.settings = settings
        self.registry = registry
        self.events = events
        self.health = health
        self.ready = ready
        self.logger = logger
        self.heartbeatEndpoint = heartbeatEndpoint
        self.apiEndpoint = apiEndpoint
        self.logs = try AgentLogPump(
            directory: settings.runDir + "/logs", maxBytes: settings.logMaxBytes, ratePerSecond: settings.logRateBytesPerSecond)
        self.records = SupervisedRecords(runDir: settings.runDir)
        self.manifestFiles = ManifestDirectoryCache(directory: settings.agentsDir)
        self.stoppedList = StoppedAgents(dataDir: settings.dataDir)
        self.cgroups = AgentCgroups.detect(cgroupRoot: settings.cgroupRoot, procSelfCgroup: settings.procSelfCgroup)
        self.history = ManifestHistory(
            directory: settings.dataDir + "/manifest-history", searchPath: settings.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
    }

    // MARK: - Manifests

    /// Loads the manifests and makes sure each names a registered agent with its class and
    /// capabilities, creating it (with a fresh secret) when new. Runs before the services start.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    func prepare(rows: [AgentRow], database: Database) throws {
        history.load()
        let (loaded, parseRefused) = AgentManifest.loadDirectory(settings.agentsDir)
        var refused = parseRefused
        var manifests: [AgentManifest] = []
        let now = Clock.monotonicNow()
        self.database.withLock { $0 = database }
        let byName = Dictionary(rows.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var managed: [String: Managed] = [:]
        for manifest in loaded.map(history.inForce) {
            if let refusal = selfRegisteredRefusal(manifest, row: byName[manifest.name], atStart: true) {
                refused.append(refusal)
                continue
            }
            switch admission(of: manifest, row: byName[manifest.name], database: database) {
            case .success(let agent):
                manifests.append(manifest)
                if let agent { managed[manifest.name] = agent }
            case .failure(let refusal):
                refused.append(refusal)
            }
        }
        for manifest in manifests { history.observe(manifest, at: now) }
        for error in refused {
            logger.error("agent manifest refused; the other agents run", metadata: ["error": "\(error)"])
            events.append(kind: "manifest_refused", agent: nil, detail: "\(error)")
        }
        let (stopped, problem) = stoppedList.read()
        if let problem { logger.warning("the list of stopped agents is unreadable; they start", metadata: ["error": "\(problem)"]) }
        for name in stopped.sorted() where managed[name]?.manifest.mode == .supervised {
            managed[name]?.stopped = true
            registry.stopped(managed[name]!.id, at: now, reason: "stopped by an operator; `pimesh agent start \(name)` starts it")
        }
        state.withLock { state in
            state.agents = managed
            state.refused = refused
        }
        adoptSurvivors()
        if let cgroups {
            do {
                try cgroups.prepare(leadPID: getpid())
                logger.info("cgroup v2 delegated: agents get their own cgroups", metadata: ["cgroup": "\(cgroups.base)"])
            } catch {
                logger.warning("cgroup v2 delegation unusable; freezing falls back to SIGSTOP", metadata: ["error": "\(error)"])
            }
        }
        logger.info(
            "agent manifests loaded",
            metadata: [
                "dir": "\(settings.agentsDir)", "supervised": "\(manifests.filter { $0.mode == .supervised }.count)",
                "attached": "\(manifests.filter { $0.mode == .attached }.count)", "refused": "\(refused.count)",
            ])
    }

    /// A supervised manifest may not take the name of an agent that registered itself through
    /// the API (an attached one's included), at a reload or at start (a manifest put in place
    /// while the lead was down): the lead would hand the program that agent's secret, and
    /// whoever registered it would go on receiving its work and answering for it. Rows from
    /// before the store marked them are judged by the manifest history at a reload and let be
    /// at start, as before: a lost history must not keep a node's agents down.
    @_optimize(size)  // cold: at start and on a reload (the 25 MB budget)
    func selfRegisteredRefusal(_ manifest: AgentManifest, row: AgentRow?, atStart: Bool) -> ConfigError? {
        guard manifest.mode == .supervised, let row, row.selfRegistered ?? (!atStart && !history.knows(manifest.name)) else { return nil }
        return ConfigError(
            file: manifest.file, key: "name", line: nil,
            reason: "\"\(manifest.name)\" is an agent that registered itself (id \(row.id)); to supervise it, move \(manifest.file) out of the "
                + "agents directory, `pimesh agents remove \(manifest.name)`, put the file back and reload (it gets a new secret); or choose another name")
    }

    /// The agent a manifest names, registered (with a fresh secret) when it is supervised and
    /// new, its class and capabilities brought up to date when they changed; nil for an
    /// attached agent that has not registered itself yet. Throws a `ConfigError` naming the file
    /// when a new supervised agent would pass `agents.max_registered`.
    /// `managed(for:row:database:)` with any failure as the manifest's refusal: one manifest
    /// past `agents.max_registered`, or one whose row the store cannot write (a full SD card, a
    /// store locked too long), stops neither the lead's start or a reload nor the manifests
    /// after it. Thrown out of a reload, such an error left the agents before it changed, their
    /// old processes never signalled and the new ones never started; at start, it stopped the lead.
    func admission(of manifest: AgentManifest, row: AgentRow?, database: Database) -> Result<Managed?, ConfigError> {
        do {
            return .success(try managed(for: manifest, row: row, database: database))
        } catch let refusal as ConfigError {
            return .failure(refusal)
        } catch {
            let cause = database.isOutOfSpace(error) ? database.storeIsFull : "\(error)"
            return .failure(ConfigError(file: manifest.file, key: "", line: nil, reason: "not applied, \(cause); reload again once it is fixed"))
        }
    }

    @_optimize(size)  // cold: at start and on a reload (the 25 MB budget)
    func managed(for manifest: AgentManifest, row existing: AgentRow?, database: Database) throws -> Managed? {
        var row: AgentRow
        if let existing {
            row = existing
            // A row from before the store marked them, now vouched for by the manifest history:
            // marked, so that it no longer depends on that history.
            if existing.selfRegistered == nil, manifest.mode == .supervised {
                try database.withConnection { connection in try AgentStore.markSelfRegistered(id: existing.id, false, in: connection) }
                row.selfRegistered = false
            }
            if existing.agentClass != manifest.agentClass || existing.capabilities != manifest.capabilities {
                try database.withConnection { connection in
                    try AgentStore.updateProfile(
                        id: existing.id, agentClass: manifest.agentClass, capabilities: manifest.capabilities, in: connection)
                }
                registry.updateProfile(existing.id, agentClass: manifest.agentClass, capabilities: manifest.capabilities)
                row.agentClass = manifest.agentClass
                row.capabilities = manifest.capabilities
            }
        } else if manifest.mode == .supervised {
            // The same bound as a registration's: the lead's memory budget counts every agent.
            if let refusal = settings.registrationRefusal() {
                throw ConfigError(file: manifest.file, key: "name", line: nil, reason: refusal + ", or raise the limit")
            }
            var generator = SystemRandomNumberGenerator()
            row = AgentRow(
                id: AgentID.random(using: &generator), name: manifest.name, agentClass: manifest.agentClass,
                capabilities: manifest.capabilities, secret: (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) },
                registeredAtMs: Clock.wallMilliseconds(), selfRegistered: false)
            try database.withConnection { connection in try AgentStore.insert(row, in: connection) }
            do {
                try registry.add(row)
            } catch {
                // No row the registry does not hold: it would come back at the next start.
                try? database.withConnection { connection in try AgentStore.delete(id: row.id, in: connection) }
                throw error
            }
        } else {
            // An attached agent registers itself; until it does there is nothing to heal.
            logger.info("attached agent not registered yet", metadata: ["agent": "\(manifest.name)"])
            return nil
        }
        registry.setMaxConcurrency(row.id, manifest.maxConcurrency)
        return Managed(manifest: manifest, id: row.id, secret: Hex.encode(row.secret), backoff: RestartBackoff(settings: manifest.backoff))
    }

    /// The manifest file of the supervised agent named `name`, if one claims it: such names are
    /// the lead's to give, never an API registration's (issue 12). Manifests added since the
    /// lead started count too.
    func supervisedManifest(named name: String) -> String? {
        if let agent = state.withLock({ $0.agents[name] }) {
            return agent.manifest.mode == .supervised ? agent.manifest.file : nil
        }
        let (manifests, _) = manifestFiles.load()
        return manifests.first { $0.name == name && $0.mode == .supervised }?.file
    }

    /// The manifests in force, by name.
    func loadedManifests() -> [String: AgentManifest] {
        state.withLock { state in state.agents.filter { !$0.value.removed }.mapValues(\.manifest) }
    }

    func manifest(naming name: String) -> String? {
        if let agent = state.withLock({ $0.agents[name] }), FileIO.exists(agent.manifest.file) { return agent.manifest.file }
        let (manifests, _) = manifestFiles.load()
        return manifests.first { $0.name == name }?.file
    }

    /// Attached agents register after the lead started: pick up their manifests when they do.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    func adoptAttached() {
        let (manifests, _) = manifestFiles.load()
        for manifest in manifests where manifest.mode == .attached {
            guard state.withLock({ $0.agents[manifest.name] == nil }), let (id, _) = registry.resolve(manifest.name) else { continue }
            state.withLock { state in
                state.agents[manifest.name] = Managed(manifest: manifest, id: id, secret: "", backoff: RestartBackoff(settings: manifest.backoff))
            }
        }
        // A registration (an attached agent's, or one again after it departed) starts a fresh
        // health record: the manifests' flow gates are put back on every adoption pass.
        for (id, limit) in state.withLock({ $0.agents.values.map { ($0.id, $0.manifest.maxConcurrency) } }) where limit != nil {
            registry.setMaxConcurrency(id, limit)
        }
    }

    // MARK: - Adoption

    /// Takes back the supervised agents an earlier lead of this data dir left running (it was
    /// killed, or it crashed): each recorded pid whose start time still matches is watched
    /// again, its log read on from its FIFO, and it is not started a second time. A recorded
    /// agent that no manifest names any more is stopped. Runs before the lead is ready, so no
    /// health tick sees these agents as gone.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    private func adoptSurvivors() {
        let recorded = records.read()
        guard !recorded.isEmpty else { return }
        let now = Clock.monotonicNow()
        var adopted: [(String, SupervisedRecords.Entry, AgentID)] = []
        var orphans: [SupervisedRecords.Entry] = []
        state.withLock { state in
            for entry in recorded.values {
                guard pimesh_process_start_time(entry.pid) == entry.startTime else { continue }
                guard var agent = state.agents[entry.name], agent.manifest.mode == .supervised, !agent.stopped else {
                    if state.refused.isEmpty { orphans.append(entry) } else { state.unclaimed.append(entry) }
                    continue
                }
                agent.pid = entry.pid
                agent.processStartTime = entry.startTime
                agent.launch = entry.launch
                agent.adopted = true
                agent.frozen = entry.frozen
                agent.startedAt = now
                agent.starts = 1
                state.agents[entry.name] = agent
                state.byPID[entry.pid] = entry.name
                adopted.append((entry.name, entry, agent.id))
            }
        }
        for (name, entry, id) in adopted {
            // The registry first: an exit seen by the reaper must come after, not be overwritten.
            registry.started(id, at: now, restart: false)
            if entry.frozen { registry.setFrozen(id, true, at: now) }
            reaper.watchAdopted(entry.pid, startTime: entry.startTime) { [weak self] pid, status in
                self?.childExited(pid: pid, status: status)
            }
            logs.reattach(name: name, header: "pid \(entry.pid) adopted by lead pid \(getpid())")
            events.append(kind: "adopted", agent: name, detail: "pid \(entry.pid), left running by the previous lead", tier: .l0)
            logger.notice("agent adopted", metadata: ["agent": "\(name)", "pid": "\(entry.pid)"])
        }
        for entry in orphans {
            stopOrphan(entry)
        }
        saveRecords()
    }

    /// A process an earlier lead started for a manifest that is gone: SIGTERM now, SIGKILL after
    /// the stop timeout if that same process still runs.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    private func stopOrphan(_ entry: SupervisedRecords.Entry) {
        kill(-entry.pid, SIGCONT)
        kill(-entry.pid, SIGTERM)
        events.append(kind: "orphan_stopped", agent: entry.name, detail: "pid \(entry.pid): no manifest names it any more", tier: .l0)
        logger.notice("stopping an agent no manifest names any more", metadata: ["agent": "\(entry.name)", "pid": "\(entry.pid)"])
        let timeout = settings.stopTimeout
        Task.detached {
            let deadline = Clock.monotonicNow() + timeout
            while Clock.monotonicNow() < deadline, pimesh_process_start_time(entry.pid) == entry.startTime {
                try? await Task.sleep(for: .milliseconds(50))
            }
            if pimesh_process_start_time(entry.pid) == entry.startTime { kill(-entry.pid, SIGKILL) }
        }
    }

    /// After the lead is ready (its addresses are known): an adopted agent that was started
    /// with something else than what it would get now (its manifest, or the lead's address,
    /// changed while no lead ran) is stopped and started again once.
    private func restartStaleAdoptions(now: Instant) {
        let stale: [(String, pid_t)] = state.withLock { state in
            var stale: [(String, pid_t)] = []
            for (name, agent) in state.agents where agent.adopted {
                guard let pid = agent.pid, agent.launch != launchDigest(of: agent) else { continue }
                state.agents[name]?.restartRequested = true
                state.agents[name]?.killDeadline = now + settings.stopTimeout
                stale.append((name, pid))
            }
            return stale
        }
        doorbell.ring()
        for (name, pid) in stale {
            kill(-pid, SIGCONT)
            kill(-pid, SIGTERM)
            events.append(kind: "restarting", agent: name, detail: "pid \(pid) was started with another manifest or lead address", tier: .l0)
        }
    }

    /// What an agent is started with, as a digest: program, arguments, environment, user.
    func launchDigest(of agent: Managed) -> String {
        let identity = identity(of: agent.manifest)
        var text = (agent.manifest.command ?? "") + "\u{0}" + agent.manifest.args.joined(separator: "\u{0}") + "\u{0}\u{0}"
        text += environment(for: agent).joined(separator: "\u{0}") + "\u{0}\u{0}"
        text += "\(identity.uid):\(identity.gid):\(identity.groups.map(String.init).joined(separator: ","))"
        return Hex.encode(Array(SHA256.hash(data: Array(text.utf8))))
    }

    func saveRecordsSoon() {
        recordsStale.value.store(true, ordering: .releasing)
        doorbell.ring()
    }

    func saveRecords() {
        recordWrites.withLock { _ in
            let entries: [SupervisedRecords.Entry] = state.withLock { state in
                state.agents.values.compactMap { agent in
                    if let starting = state.starting[agent.manifest.name] { return starting }
                    guard let pid = agent.pid, let startTime = agent.processStartTime, let launch = agent.launch else { return nil }
                    return .init(name: agent.manifest.name, pid: pid, startTime: startTime, frozen: agent.frozen, launch: launch)
                } + state.unclaimed.filter { pimesh_process_start_time($0.pid) == $0.startTime }
            }
            do {
                try records.write(entries)
            } catch {
                logger.warning("supervised agents not recorded: a lead restart would start them again", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: - Service

    func run() async throws {
        while !ready.isReady {
            try await Task.sleep(for: .milliseconds(10))
        }
        _ = try? await Blocking.onSupervisionThread {
            self.restartStaleAdoptions(now: Clock.monotonicNow())
            let names = self.state.withLock {
                $0.agents.values.filter { $0.manifest.mode == .supervised && $0.pid == nil && !$0.stopped }.map(\.manifest.name)
            }.sorted()
            for name in names { self.start(name, now: Clock.monotonicNow()) }
        }
        // Event-driven: the loop runs when a restart or a kill deadline is due, or when rung
        // (an exit, a heal, a changed manifest); an agent set that just runs costs no wake-ups.
        await runWhenDue(doorbell: doorbell) {
            do {
                return try await Blocking.onSupervisionThread {
                    self.tick(now: Clock.monotonicNow())
                    if self.recordsStale.value.exchange(false, ordering: .acquiringAndReleasing) { self.saveRecords() }
                    return self.nextDue()
                }
            } catch {
                return Clock.monotonicNow() + self.settings.tick
            }
        }
        // Not cancellable: past the group's stop deadline this task is cancelled, and its
        // sleeps would return at once and spin; the agents must still be stopped.
        await Task { await self.stopAll() }.value
    }

    /// The next restart or kill deadline; nil when none is pending.
    func nextDue() -> Instant? {
        state.withLock { state in
            state.agents.values.flatMap { agent in
                [agent.pid == nil ? agent.restartAt : nil, agent.healPID == nil ? nil : agent.healDeadline, agent.pid == nil ? nil : agent.killDeadline]
                    .compactMap { $0 }
            }.min()
        }
    }

    func tick(now: Instant) {
        let due: [String] = state.withLock { state in
            guard !state.shuttingDown else { return [] }
            return state.agents.values.filter { $0.pid == nil && ($0.restartAt.map { $0 <= now } ?? false) }.map(\.manifest.name)
        }
        for name in due { start(name, now: now) }
        let overdue: [pid_t] = state.withLock { state in
            state.agents.values.flatMap { agent -> [pid_t] in
                var late: [pid_t] = []
                if let pid = agent.healPID, let deadline = agent.healDeadline, deadline <= now { late.append(pid) }
                if let pid = agent.pid, let deadline = agent.killDeadline, deadline <= now { late.append(pid) }
                return late
            }
        }
        // SIGKILL once a second until the reaper sees the end: a deadline left in the past
        // would make every pass due at once (a process in D state can take seconds to die).
        if !overdue.isEmpty {
            state.withLock { state in
                for name in Array(state.agents.keys) {
                    let agent = state.agents[name]!
                    if let deadline = agent.healDeadline, deadline <= now { state.agents[name]?.healDeadline = now + .seconds(1) }
                    if let deadline = agent.killDeadline, deadline <= now { state.agents[name]?.killDeadline = now + .seconds(1) }
                }
            }
        }
        for pid in overdue { kill(-pid, SIGKILL) }
    }

    // MARK: - Starting and exits

    /// Who an agent runs as: its manifest's user, else the default agent user, else the lead.
    func identity(of manifest: AgentManifest) -> ProcessIdentity {
        manifest.identity ?? defaultIdentity ?? .lead
    }

    @_optimize(size)  // cold: an agent starts (the 25 MB budget)
    private func environment(for agent: Managed) -> [String] {
        var values: [String: String] = [:]
        for key in ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"] { if let value = settings.environment[key] { values[key] = value } }
        let identity = identity(of: agent.manifest)
        if identity.uid != geteuid() {
            values["USER"] = identity.user
            values["HOME"] = "/"
        }
        if values["PATH"] == nil { values["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        for (key, value) in agent.manifest.environment { values[key] = value }
        values["PIMESH_AGENT_ID"] = agent.id.description
        values["PIMESH_AGENT_NAME"] = agent.manifest.name
        values["PIMESH_AGENT_CLASS"] = agent.manifest.agentClass.rawValue
        values["PIMESH_AGENT_CAPABILITIES"] = agent.manifest.capabilities.joined(separator: ",")
        values["PIMESH_DATA_DIR"] = settings.dataDir
        if let api = apiEndpoint() {
            // The agent's own credential: its work, results and answers, nothing else (issue 12).
            values["PIMESH_API_HOST"] = api.host
            values["PIMESH_API_PORT"] = String(api.port)
        }
        if let heartbeat = heartbeatEndpoint() {
            values["PIMESH_HEARTBEAT_HOST"] = heartbeat.host
            values["PIMESH_HEARTBEAT_PORT"] = String(heartbeat.port)
            values["PIMESH_HEARTBEAT_INTERVAL_MS"] = String(heartbeat.intervalMs)
            if let socket = heartbeat.unixSocket { values["PIMESH_HEARTBEAT_SOCKET"] = socket }
        }
        return values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }

    /// Agents start their heartbeat iterations from the wall clock, which a Pi steps back at
    /// times (fake-hwclock's time at boot after a power cut, an NTP correction): the lead's
    /// last accepted iteration keeps a restarted agent above it instead of dropped as a replay
    /// until the clock catches up. Not part of `launchDigest`: it changes with every heartbeat.
    private func iterationFloor(for agent: Managed) -> [String] {
        registry.startingIteration(of: agent.id, nowWallMs: Clock.wallMilliseconds()).map { ["PIMESH_HEARTBEAT_LAST_ITERATION=\($0)"] } ?? []
    }

    @_optimize(size)  // cold: a spawn, a fork and exec dwarf it (the 25 MB budget)
    func start(_ name: String, now: Instant) {
        let current: Managed? = state.withLock { state in
            guard !state.shuttingDown, let agent = state.agents[name], agent.pid == nil else { return nil }
            return agent
        }
        guard let agent = current, let command = agent.manifest.command else { return }
        // A program replaced under a running manifest is a change too (root-cause evidence).
        history.observe(agent.manifest, at: now)
        do {
            let identity = identity(of: agent.manifest)
            let output = try logs.makeFIFO(for: name)
            defer { close(output.childEnd) }
            // The secret goes through a pipe, not the environment: that is readable in
            // /proc/PID/environ by every process of the agent's user and handed on to each
            // program the agent runs; the pipe is empty once the agent has read it.
            let secret = Array(agent.secret.utf8).withUnsafeBytes { pimesh_filled_pipe($0.baseAddress, $0.count) }
            guard secret >= 0 else { throw ChildProcess.SpawnError(description: "cannot pass its secret: \(String(cString: strerror(errno)))") }
            defer { close(secret) }
            let spawned: ChildProcess.Spawned
            let launch = launchDigest(of: agent)
            var startTime: UInt64 = 0
            do {
                spawned = try ChildProcess.spawn(
                    program: command, arguments: agent.manifest.args, environment: environment(for: agent) + iterationFloor(for: agent) + ["PIMESH_AGENT_SECRET_FD=\(secret)"],
                    captureOutput: false,
                    outputDescriptor: output.childEnd, passedDescriptor: secret, identity: identity.needsChange ? identity : nil
                ) { pid in
                    startTime = pimesh_process_start_time(pid)
                    let entry = SupervisedRecords.Entry(name: name, pid: pid, startTime: startTime, frozen: false, launch: launch)
                    self.state.withLock { $0.starting[name] = entry }
                    self.saveRecords()
                }
            } catch {
                state.withLock { _ = $0.starting.removeValue(forKey: name) }
                close(output.reader)
                throw error
            }
            let restart = agent.starts > 0
            let leadStopping = state.withLock { state in
                state.starting[name] = nil
                state.agents[name]?.pid = spawned.pid
                state.agents[name]?.processStartTime = startTime
                state.agents[name]?.launch = launch
                state.agents[name]?.adopted = false
                state.agents[name]?.startedAt = now
                state.agents[name]?.restartAt = nil
                state.agents[name]?.restartByPolicy = false
                state.agents[name]?.starts += 1
                if restart { state.agents[name]?.restarts += 1 }
                state.byPID[spawned.pid] = name
                return state.shuttingDown
            }
            // The lead began to stop while this one was spawned: stopAll did not see it.
            if leadStopping { kill(-spawned.pid, SIGTERM) }
            logs.attach(fd: output.reader, name: name, header: "pid \(spawned.pid) started")
            if let cgroups {
                do {
                    try cgroups.place(pid: spawned.pid, name: name, memoryLimitBytes: agent.manifest.memoryLimitBytes)
                } catch {
                    logger.warning("agent left in the lead's cgroup", metadata: ["agent": "\(name)", "error": "\(error)"])
                }
            }
            registry.started(agent.id, at: now, restart: restart)
            // Seed 002's restart is an L0 step: due when its backoff ended.
            if restart, agent.restartByPolicy, let due = agent.restartAt { health.recordStep(.l0, due: due, done: Clock.monotonicNow()) }
            reaper.watch(spawned.pid) { [weak self] pid, status in self?.childExited(pid: pid, status: status) }
            events.append(kind: restart ? "restarted" : "started", agent: name, detail: "pid \(spawned.pid)", tier: restart ? .l0 : nil)
            logger.info(restart ? "agent restarted" : "agent started", metadata: ["agent": "\(name)", "pid": "\(spawned.pid)"])
            saveRecordsSoon()
        } catch {
            events.append(kind: "start_failed", agent: name, detail: "\(error)")
            logger.error("agent did not start", metadata: ["agent": "\(name)", "error": "\(error)"])
            // A start that fails is a crash after no time at all: the same backoff, and in the
            // end the same giving up (issue 13: these once retried 100 times a second).
            state.withLock { state in
                state.agents[name]?.startedAt = now
                state.agents[name]?.restartAt = nil
            }
            scheduleAfterExit(name, now: now, cleanExit: false)
        }
    }

    /// `status`: nil for an adopted agent, whose exit status went to whoever reaped it.
    func childExited(pid: pid_t, status: Int32?) {
        let now = Clock.monotonicNow()
        let (text, clean) = status.map(ChildProcess.describe(waitStatus:)) ?? ("ended (adopted: its exit status is not the lead's to see)", false)
        enum Next {
            case none
            case healDone(String)
            case exited(String, AgentID, restartRequested: Bool, shuttingDown: Bool, leadStopping: Bool)
        }
        let next: Next = state.withLock { state in
            if let entry = state.agents.first(where: { $0.value.healPID == pid }) {
                state.agents[entry.key]?.healPID = nil
                state.agents[entry.key]?.healDeadline = nil
                return .healDone(entry.key)
            }
            guard let name = state.byPID.removeValue(forKey: pid), var agent = state.agents[name] else { return .none }
            let restartRequested = agent.restartRequested && !agent.stopped
            if agent.adopted { logs.finish(name: name) }
            agent.pid = nil
            agent.processStartTime = nil
            agent.launch = nil
            agent.adopted = false
            agent.killDeadline = nil
            agent.restartRequested = false
            agent.frozen = false
            agent.lastExit = text
            agent.memoryBytes = nil
            // A reload removed its manifest: with its process gone, so is the lead's hold on it.
            if agent.removed { state.agents[name] = nil } else { state.agents[name] = agent }
            return .exited(
                name, agent.id, restartRequested: restartRequested, shuttingDown: state.shuttingDown || agent.stopped || agent.removed,
                leadStopping: state.shuttingDown)
        }
        switch next {
        case .none:
            return
        case .healDone(let name):
            events.append(kind: "heal_command_finished", agent: name, detail: text, tier: .l1)
            return
        case .exited(let name, let id, let restartRequested, let shuttingDown, let leadStopping):
            // Recorded (two fsyncs, slow on an SD card) once the restart is on its way, not before:
            // a record still naming the dead pid is harmless, as its start time no longer matches.
            defer { saveRecordsSoon() }
            // The health tick reports the exit as a change of condition, dated now. Agents the
            // lead stops on its way out are down on purpose: counted as failures they would tip
            // the node into EMERGENCY (alert, snapshot) during every `systemctl stop`.
            if leadStopping {
                registry.stopped(id, at: now, reason: "the lead is stopping (pid \(pid) \(text))")
            } else {
                registry.exited(id, at: now, reason: "pid \(pid) \(text)", requested: restartRequested && !shuttingDown, clean: clean)
            }
            logger.notice("agent exited", metadata: ["agent": "\(name)", "pid": "\(pid)", "how": "\(text)"])
            if shuttingDown { return }
            if restartRequested {
                let automatic = state.withLock { state -> Bool in
                    defer { state.agents[name]?.healedAutomatically = false }
                    return state.agents[name]?.healedAutomatically == true
                }
                if automatic { return scheduleAfterExit(name, now: now, cleanExit: false) }
                state.withLock { $0.agents[name]?.restartAt = now }
                doorbell.ring()
                return
            }
            scheduleAfterExit(name, now: now, cleanExit: clean)
        }
    }

    /// Restart policy, backoff and authority: when (and whether) an exited agent starts again.
    func scheduleAfterExit(_ name: String, now: Instant, cleanExit: Bool) {
        let level = health.level
        let decision: (kind: String, detail: String, tier: AuthorityTier?)? = state.withLock { state in
            guard var agent = state.agents[name] else { return nil }
            agent.restartAt = nil
            agent.restartByPolicy = false
            defer { state.agents[name] = agent }
            guard agent.manifest.restartPolicy.restarts(cleanExit: cleanExit) else {
                return ("not_restarted", "restart policy \(agent.manifest.restartPolicy.rawValue)", nil)
            }
            let delay = agent.backoff.delayAfterExit(startedAt: agent.startedAt ?? now, exitedAt: now)
            if delay >= agent.manifest.backoff.maximum && agent.backoff.consecutiveFailures > 1 {
                agent.awaiting = .restartGivenUp
                agent.awaitingSince = now
                agent.awaitingReason = "crashed \(agent.backoff.consecutiveFailures) times in a row; backoff at its maximum"
                return ("failed", "restart_given_up: \(agent.awaitingReason!); it stays down until `pimesh heal \(name)`", .l2)
            }
            guard HealingAction.restartExited.tier.runsAutomatically(at: level) else {
                agent.awaiting = .restartExited
                agent.awaitingSince = now
                agent.awaitingReason = "the node is \(level.rawValue)"
                return ("awaiting_operator", "restart_exited waits: the node is \(level.rawValue); run `pimesh heal \(name)`", .l0)
            }
            agent.restartAt = now + delay
            agent.restartByPolicy = true
            return ("restart_scheduled", "in \(Int(delay.milliseconds)) ms", .l0)
        }
        if let decision { events.append(kind: decision.kind, agent: name, detail: decision.detail, tier: decision.tier) }
        // Seed 002's "force restart, bypass cooldown": a restart due now is queued straight on
        // the supervision thread, where starts, stops and reloads keep their order, rather than
        // waiting for the supervision loop to be scheduled on the cooperative pool.
        if decision?.kind == "restart_scheduled", state.withLock({ $0.agents[name]?.restartAt.map { $0 <= now } ?? false }) {
            Blocking.enqueueOnSupervisionThread { [weak self] in self?.start(name, now: Clock.monotonicNow()) }
        }
        doorbell.ring()
    }

    @_optimize(size)  // cold: once, as the lead stops (the 25 MB budget)
    private func stopAll() async {
        let pids: [pid_t] = state.withLock { state in
            state.shuttingDown = true
            return state.agents.values.compactMap { agent in agent.pid }
        }
        guard !pids.isEmpty else { return }
        for pid in pids {
            kill(-pid, SIGCONT)
            kill(-pid, SIGTERM)
        }
        let deadline = Clock.monotonicNow() + settings.stopTimeout
        while Clock.monotonicNow() < deadline {
            if state.withLock({ $0.byPID.isEmpty }) { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = state.withLock { Array($0.byPID.keys) }
        for pid in left { kill(-pid, SIGKILL) }
        if !left.isEmpty { logger.warning("agents killed after the stop timeout", metadata: ["agents": "\(left.count)"]) }
        let killedBy = Clock.monotonicNow() + .seconds(1)
        while Clock.monotonicNow() < killedBy, !state.withLock({ $0.byPID.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        reaper.stop()
        logger.info("supervised agents stopped", metadata: ["agents": "\(pids.count)"])
    }

    // MARK: - Healing, freezing

    enum ActionError: Error, CustomStringConvertible {
        case unknown(String)
        case notManaged(String, agentsDir: String)
        case unsupported(String)
        case failed(String)

        var description: String {
            switch self {
            case .unknown(let name): "no agent named \"\(name)\""
            case .notManaged(let name, let agentsDir):
                "\"\(name)\" has no manifest in \(agentsDir): the lead did not start it and cannot stop, freeze or heal it; "
                    + "pause it where it runs (`docker pause`, `podman pause`, `kill -STOP`), or give it a manifest in \(agentsDir) and `pimesh reload`"
            case .unsupported(let message), .failed(let message): message
            }
        }
    }

    func managed(_ name: String) throws(ActionError) -> Managed {
        guard let agent = state.withLock({ $0.agents[name] }) else {
            if registry.resolve(name) != nil { throw .notManaged(name, agentsDir: settings.agentsDir) }
            throw .unknown(name)
        }
        return agent
    }

    /// Kills (if running) and starts a supervised agent now, or runs an attached agent's heal
    /// command. `operator`: the operator's word, which clears any action waiting for it and the
    /// backoff. Returns what was done.
    @_optimize(size)  // cold: an operator's command or a playbook step (the 25 MB budget)
    @discardableResult
    func heal(_ name: String, reason: String, byOperator: Bool) throws(ActionError) -> String {
        let agent = try managed(name)
        if byOperator {
            if agent.awaiting != nil, let since = agent.awaitingSince { health.recordStep(.l2, due: since, done: Clock.monotonicNow()) }
            state.withLock { state in
                state.agents[name]?.awaiting = nil
                state.agents[name]?.awaitingReason = nil
                state.agents[name]?.backoff.reset()
            }
        }
        switch agent.manifest.mode {
        case .supervised:
            if let pid = agent.pid {
                state.withLock { state in
                    state.agents[name]?.restartRequested = true
                    state.agents[name]?.healedAutomatically = !byOperator
                }
                kill(-pid, SIGCONT)
                kill(-pid, SIGKILL)
                events.append(kind: "restarting", agent: name, detail: "killed pid \(pid): \(reason)", tier: byOperator ? .l2 : .l1)
                return "killed pid \(pid); it starts again at once"
            }
            state.withLock { $0.agents[name]?.restartAt = Clock.monotonicNow() }
            doorbell.ring()
            events.append(kind: "restarting", agent: name, detail: reason, tier: byOperator ? .l2 : .l0)
            return "starting it now"
        case .attached:
            return try runHealCommand(agent, reason: reason, byOperator: byOperator)
        }
    }

    @_optimize(size)  // cold: a heal; the command it spawns dwarfs it (the 25 MB budget)
    private func runHealCommand(_ agent: Managed, reason: String, byOperator: Bool) throws(ActionError) -> String {
        let name = agent.manifest.name
        if let pid = agent.healPID { return "its heal command is still running (pid \(pid))" }
        let argv = agent.manifest.healCommand.map { $0.replacing("{name}", with: name) }
        do {
            var environment = ["PATH=" + (settings.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")]
            if let home = settings.environment["HOME"] { environment.append("HOME=" + home) }
            let spawned = try ChildProcess.spawn(
                program: argv[0], arguments: Array(argv.dropFirst()), environment: environment, captureOutput: true)
            state.withLock { state in
                state.agents[name]?.healPID = spawned.pid
                state.agents[name]?.healDeadline = Clock.monotonicNow() + agent.manifest.healTimeout
            }
            doorbell.ring()
            if let output = spawned.output {
                logs.attach(fd: output, name: name + ".heal", header: "\(argv.joined(separator: " ")) (\(reason))")
            }
            reaper.watch(spawned.pid) { [weak self] pid, status in self?.childExited(pid: pid, status: status) }
            events.append(
                kind: "heal_command", agent: name, detail: "\(argv.joined(separator: " ")): \(reason)", tier: byOperator ? .l2 : .l1)
            return "ran \(argv.joined(separator: " ")) (pid \(spawned.pid)); its output is in \(logs.path(of: name + ".heal"))"
        } catch {
            events.append(kind: "heal_command_failed", agent: name, detail: "\(error)", tier: .l1)
            throw .failed("\(error)")
        }
    }

    /// Notes an action the authority tier does not allow now; `pimesh heal` carries it out.
    func await(_ name: String, action: HealingAction, reason: String) {
        let fresh = state.withLock { state -> Bool in
            guard state.agents[name]?.awaiting == nil else { return false }
            state.agents[name]?.awaiting = action
            state.agents[name]?.awaitingSince = Clock.monotonicNow()
            state.agents[name]?.awaitingReason = reason
            return true
        }
        if fresh {
            events.append(
                kind: "awaiting_operator", agent: name, detail: "\(action.rawValue): \(reason); run `pimesh heal \(name)`", tier: action.tier)
        }
    }

    /// Parked steps are judged again at every health tick (issue 13): dropped when the agent
    /// recovered, carried out when the level allows them; `restart_given_up` waits for the operator.
    func rejudgeAwaiting(level: DegradationLevel, condition: (AgentID) -> AgentCondition?) {
        let waiting = state.withLock { state in
            state.agents.values.compactMap { agent -> (name: String, id: AgentID, action: HealingAction, running: Bool, overLimit: Bool)? in
                guard let action = agent.awaiting else { return nil }
                var overLimit = false
                if let bytes = agent.memoryBytes, let limit = agent.manifest.memoryLimitBytes { overLimit = bytes > limit }
                return (agent.manifest.name, agent.id, action, agent.pid != nil, overLimit)
            }
        }
        let parked = waiting.map { entry in
            (name: entry.name, action: entry.action, verdict: entry.action.rejudge(
                at: level, running: entry.running, alive: condition(entry.id) == .alive, overMemoryLimit: entry.overLimit))
        }
        for entry in parked where entry.verdict != .wait {
            let cleared = state.withLock { state -> Bool in
                guard state.agents[entry.name]?.awaiting == entry.action else { return false }
                state.agents[entry.name]?.awaiting = nil
                state.agents[entry.name]?.awaitingReason = nil
                return true
            }
            guard cleared else { continue }
            if entry.verdict == .drop {
                events.append(kind: "awaiting_dropped", agent: entry.name, detail: "\(entry.action.rawValue): no longer needed")
                continue
            }
            events.append(
                kind: "awaiting_carried_out", agent: entry.name, detail: "\(entry.action.rawValue): the node is \(level.rawValue) now",
                tier: entry.action.tier)
            if entry.action == HealingAction.restartExited {
                state.withLock { $0.agents[entry.name]?.restartAt = Clock.monotonicNow() }
                doorbell.ring()
            } else {
                _ = try? heal(entry.name, reason: "\(entry.action.rawValue), parked until the node was \(level.rawValue)", byOperator: false)
            }
        }
    }

    /// `by`: who asked (the API's caller, with the uid on the unix socket), kept in the event.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    func freeze(_ name: String, _ frozen: Bool, by caller: String) throws(ActionError) -> String {
        let agent = try managed(name)
        guard agent.manifest.mode == .supervised else {
            throw .unsupported("\"\(name)\" is attached: freeze it with its own runtime (podman pause \(name))")
        }
        guard let pid = agent.pid else { throw .unsupported("\"\(name)\" is not running") }
        guard agent.frozen != frozen else { return frozen ? "already frozen" : "not frozen" }
        var how = frozen ? "SIGSTOP" : "SIGCONT"
        if let cgroups, (try? cgroups.freeze(name: name, frozen)) != nil {
            how = "cgroup.freeze"
        } else if kill(-pid, frozen ? SIGSTOP : SIGCONT) != 0 {
            throw .failed("cannot signal pid \(pid): \(String(cString: strerror(errno)))")
        }
        state.withLock { $0.agents[name]?.frozen = frozen }
        saveRecords()
        registry.setFrozen(agent.id, frozen, at: Clock.monotonicNow())
        events.append(kind: frozen ? "frozen" : "thawed", agent: name, detail: "pid \(pid) via \(how), by \(caller)", tier: .l2)
        return (frozen ? "frozen" : "thawed") + " (pid \(pid), \(how))"
    }

    // MARK: - Reading

    /// Supervised agents' processes: running or gone. Attached agents are absent (unknown).
    func liveness() -> [AgentID: AgentHealth.ProcessLiveness] {
        state.withLock { state in
            var result: [AgentID: AgentHealth.ProcessLiveness] = [:]
            for agent in state.agents.values where agent.manifest.mode == .supervised {
                result[agent.id] = agent.pid == nil ? .gone : .running
            }
            return result
        }
    }

    /// Agents a manifest names: their silence is a failure, they never depart.
    func expectedAgents() -> Set<AgentID> {
        state.withLock { Set($0.agents.values.map(\.id)) }
    }

    /// The same agents by name, whatever their state.
    func declaredNames() -> Set<String> {
        state.withLock { Set($0.agents.keys) }
    }

    /// Supervised agents running now as the lead's own children (not adopted, frozen, stopped
    /// or about to be killed): what a drill may kill.
    func drillTargets() -> [(name: String, id: AgentID, pid: pid_t)] {
        state.withLock { state in
            state.agents.compactMap { name, agent in
                guard let pid = agent.pid, !agent.adopted, !agent.frozen, !agent.stopped, !agent.removed, agent.killDeadline == nil,
                    !agent.restartRequested, agent.manifest.mode == .supervised
                else { return nil }
                return (name, agent.id, pid)
            }.sorted { $0.name < $1.name }
        }
    }

    /// One agent's process as a playbook step needs it.
    struct ProcessView: Sendable {
        var supervised: Bool
        var running: Bool
        var stopped: Bool
        var awaiting: Bool
        /// Exited with its next start scheduled (its backoff running).
        var restartScheduled: Bool
        var restarts: Int
        var lastExit: String?
        var logPath: String
    }

    func processView(_ name: String) -> ProcessView? {
        guard let agent = state.withLock({ $0.agents[name] }) else { return nil }
        return ProcessView(
            supervised: agent.manifest.mode == .supervised, running: agent.pid != nil, stopped: agent.stopped || agent.removed,
            awaiting: agent.awaiting != nil, restartScheduled: agent.restartAt != nil || agent.restartRequested, restarts: agent.restarts, lastExit: agent.lastExit, logPath: logs.path(of: name))
    }

    /// Running, unfrozen, non-critical supervised agents, lowest `priority` first (then the
    /// largest): what `freeze_lowest_priority` takes.
    func freezeCandidates() -> [(name: String, priority: Int)] {
        state.withLock { state in
            state.agents.values.filter { agent in
                agent.manifest.mode == .supervised && agent.pid != nil && !agent.frozen && !agent.stopped && !agent.removed
                    && !agent.manifest.critical && agent.killDeadline == nil
            }.sorted { ($0.manifest.priority, -Int($0.memoryBytes ?? 0), $0.manifest.name) < ($1.manifest.priority, -Int($1.memoryBytes ?? 0), $1.manifest.name) }
                .map { ($0.manifest.name, $0.manifest.priority) }
        }
    }

    /// The agents whose manifests say `"critical": true`.
    /// Agents whose manifest asks for a liveness probe and that run now (not stopped, frozen or
    /// between restarts): a probe of a process that is not there would only say so again.
    func livenessTargets() -> [LivenessProber.Target] {
        state.withLock { state in
            state.agents.values.compactMap { agent in
                guard let probe = agent.manifest.livenessProbe, !agent.stopped, !agent.frozen,
                    agent.manifest.mode == .attached || agent.pid != nil
                else { return nil }
                return LivenessProber.Target(
                    id: agent.id, name: agent.manifest.name, probe: probe,
                    processStartedAt: agent.manifest.mode == .supervised ? agent.startedAt : nil)
            }
        }
    }

    func criticalAgents() -> Set<AgentID> {
        state.withLock { Set($0.agents.values.filter(\.manifest.critical).map(\.id)) }
    }

    func isSupervised(_ id: AgentID) -> (name: String, mode: AgentManifest.Mode)? {
        state.withLock { state in
            state.agents.first { $0.value.id == id }.map { ($0.key, $0.value.manifest.mode) }
        }
    }

    /// Reads each running agent's memory (cgroup memory.current, else RSS).
    func measureMemory() -> [MemoryBudget.Usage] {
        let running = state.withLock { $0.agents.values.compactMap { agent in agent.pid.map { (agent.manifest.name, $0, agent.manifest.memoryLimitBytes) } } }
        var usages: [MemoryBudget.Usage] = []
        for (name, pid, limit) in running {
            guard let bytes = cgroups?.memoryCurrent(name: name) ?? ProcessRSS.bytes(pid: pid, procRoot: settings.procRoot) else { continue }
            usages.append(MemoryBudget.Usage(name: name, bytes: bytes, limitBytes: limit))
            state.withLock { $0.agents[name]?.memoryBytes = bytes }
        }
        return usages
    }

    func views(now: Instant) -> [AgentID: SupervisionView] {
        state.withLock { state in
            var result: [AgentID: SupervisionView] = [:]
            for agent in state.agents.values {
                result[agent.id] = SupervisionView(
                    mode: agent.manifest.mode.rawValue, manifest: agent.manifest.file, pid: agent.pid, restarts: agent.restarts,
                    lastExit: agent.lastExit, restartInMs: agent.restartAt.map { max(0, Int64((($0 - now).milliseconds).rounded())) },
                    frozen: agent.frozen, awaitingOperator: agent.awaiting.map { "\($0.rawValue): \(agent.awaitingReason ?? "")" },
                    memoryBytes: agent.memoryBytes, memoryLimitBytes: agent.manifest.memoryLimitBytes,
                    log: agent.manifest.mode == .supervised ? logs.path(of: agent.manifest.name) : nil,
                    user: agent.manifest.mode == .supervised ? identity(of: agent.manifest).user : nil,
                    failed: agent.awaiting == .restartGivenUp, stopped: agent.stopped)
            }
            return result
        }
    }

    struct Summary: Sendable {
        var supervised = 0
        var attached = 0
        var restarts = 0
        var refused: [String] = []
        var awaiting: [String] = []
        var warnings: [String] = []
        var failed: [String] = []
    }

    @_optimize(size)  // cold: a status call (the 25 MB budget)
    var summary: Summary {
        state.withLock { state in
            var summary = Summary()
            for agent in state.agents.values {
                if agent.manifest.mode == .supervised { summary.supervised += 1 } else { summary.attached += 1 }
                summary.restarts += agent.restarts
                if let action = agent.awaiting { summary.awaiting.append("\(agent.manifest.name): \(action.rawValue)") }
                if agent.awaiting == .restartGivenUp { summary.failed.append(agent.manifest.name) }
                if agent.manifest.mode == .supervised, identity(of: agent.manifest).isRoot {
                    summary.warnings.append(
                        "\(agent.manifest.name) runs as root"
                            + (agent.manifest.user == nil
                                ? " (no \"user\" in \(agent.manifest.file) and no \(ProcessIdentity.defaultAgentUser) user on this system)"
                                : " (its manifest says so)"))
                }
            }
            // The kernel lets a process open the descriptors (the secret's pipe, until read) and,
            // where ptrace is not restricted, read the memory of any other of its uid: one
            // warning per shared uid.
            let running = state.agents.values.filter { $0.manifest.mode == .supervised && !$0.removed && !$0.stopped }
            let byUser = Dictionary(grouping: running.map { identity(of: $0.manifest) }.filter { !$0.isRoot }, by: \.uid)
            if let lead = byUser[geteuid()] {
                summary.warnings.append(
                    "\(lead.count) agent\(lead.count == 1 ? " runs" : "s run") as the lead's own user (\(lead[0].user)): able to read every secret in the data dir; "
                        + "give each manifest a \"user\" of its own")
            }
            for (uid, sharing) in byUser where sharing.count > 1 && uid != geteuid() {
                summary.warnings.append(
                    "\(sharing.count) agents run as \(sharing[0].user): each can read the others' secrets (their memory, /proc/PID/fd); "
                        + "give each manifest a \"user\" of its own to keep them apart")
            }
            summary.refused = state.refused.map(\.description)
            summary.awaiting.sort()
            summary.failed.sort()
            summary.warnings.sort()
            return summary
        }
    }

    var cgroupNote: String {
        cgroups.map { "delegated (\($0.base))" } ?? "not delegated: freeze uses SIGSTOP/SIGCONT, memory is RSS from /proc"
    }

    func logTail(_ name: String, bytes: Int) throws(ActionError) -> [UInt8] {
        _ = try managed(name)
        return logs.tail(of: name, bytes: bytes)
    }
}

final class RecordsFlag: Sendable {
    let value = Atomic<Bool>(false)
}
