import Glibc
import Logging
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// Carries out playbooks (docs/incidents.md "Playbooks"): when an open incident's causes call
/// for a playbook it has not run yet, one run starts; the core's `PlaybookRun` decides retries,
/// continuing and stopping, and this shell does each step with what the lead already has
/// (supervisor, registry, snapshots). Every step and the run's record go to the incident's
/// timeline, and so to the audit log.
final class PlaybookRunner: Sendable {
    struct Settings: Sendable {
        var directory: String
        /// Seed 002's "verify 18/20 agents running": `incidents.emergency_min_running`.
        var minRunning = 0.9
    }

    static let pollEvery = Duration.milliseconds(20)
    /// Runs going on at once; an incident past this waits for the next health tick.
    static let maxConcurrentRuns = 8

    let settings: Settings
    let state: LeadState
    let logger: Logger
    private let catalog: Mutex<(catalog: PlaybookCatalog, refused: [ConfigError])>
    private struct Book {
        /// Playbooks run (or running) per open incident.
        var ran: [Int64: [String]] = [:]
        var running: Set<Int64> = []
        var frozenBy: [Int64: [String]] = [:]
        var findings: [Int64: RootCause.Finding] = [:]
        var emergencyRestarted: Set<Int64> = []
    }
    private let book = Mutex(Book())

    init(settings: Settings, state: LeadState, logger: Logger) {
        self.settings = settings
        self.state = state
        self.logger = logger
        let (playbooks, refused) = PlaybookFile.loadDirectory(settings.directory)
        catalog = Mutex((PlaybookCatalog(builtIn: PlaybookFile.builtIn(), operator: playbooks), refused))
        for error in refused { logger.error("playbook refused; the others are in force", metadata: ["error": "\(error)"]) }
    }

    /// Reads playbooks.d again (`pimesh reload`); returns the refused files.
    @discardableResult
    func reload() -> [ConfigError] {
        let (playbooks, refused) = PlaybookFile.loadDirectory(settings.directory)
        catalog.withLock { $0 = (PlaybookCatalog(builtIn: PlaybookFile.builtIn(), operator: playbooks), refused) }
        for error in refused { logger.error("playbook refused; the others are in force", metadata: ["error": "\(error)"]) }
        return refused
    }

    var playbooks: (playbooks: [Playbook], refused: [ConfigError]) {
        catalog.withLock { ($0.catalog.playbooks, $0.refused) }
    }

    // MARK: - Choosing

    /// After each health tick: starts the playbook an open incident calls for, once per
    /// playbook per incident; undoes shedding and freezing of incidents no longer open.
    @_optimize(size)  // cold: an incident's playbook (the 25 MB budget)
    func consider(open: [Incident], resolved: [Incident]) {
        for incident in open where incident.state != .open { finish(incident.id) }
        // Resolved here or by an operator: whatever the runner holds for it goes.
        let openIDs = Set(open.map(\.id))
        let gone = book.withLock { book in
            Set(book.ran.keys).union(book.frozenBy.keys).union(book.findings.keys).subtracting(openIDs).subtracting(book.running)
        }
        for id in gone.union(resolved.map(\.id)) { finish(id, forget: true) }
        let starting: [(Incident, Playbook)] = book.withLock { book in
            let chosen = catalog.withLock { $0.catalog }
            var starting: [(Incident, Playbook)] = []
            for incident in open where incident.state == .open && !book.running.contains(incident.id) {
                guard book.running.count + starting.count < Self.maxConcurrentRuns,
                    let playbook = chosen.playbook(causes: incident.causes, severity: incident.severity),
                    !(book.ran[incident.id] ?? []).contains(playbook.id)
                else { continue }
                book.ran[incident.id, default: []].append(playbook.id)
                book.running.insert(incident.id)
                starting.append((incident, playbook))
            }
            return starting
        }
        for (incident, playbook) in starting {
            Task { await self.run(playbook, for: incident) }
        }
    }

    /// Thaws what a siege playbook froze and stops its shedding once the incident is mitigated.
    @_optimize(size)  // cold: an incident's playbook (the 25 MB budget)
    private func finish(_ id: Int64, forget: Bool = false) {
        let frozen = book.withLock { book -> [String] in
            let frozen = book.frozenBy.removeValue(forKey: id) ?? []
            if forget {
                book.ran[id] = nil
                book.findings[id] = nil
                book.emergencyRestarted.remove(id)
            }
            return frozen
        }
        if state.health.sheddingIncidents.contains(id) {
            state.health.shed(for: id, false)
            state.incidents?.playbookEntry(id, kind: "playbook_undone", detail: "shedding ended", isResponse: false)
        }
        for name in frozen {
            let answer = (try? state.supervisor?.freeze(name, false, by: "playbook (\(Incident.name(id)) mitigated)")) ?? "not thawed"
            state.incidents?.playbookEntry(id, kind: "playbook_undone", detail: "\(name): \(answer)", isResponse: false)
        }
    }

    // MARK: - Running

    @_optimize(size)  // cold: an incident's playbook (the 25 MB budget)
    func run(_ playbook: Playbook, for incident: Incident) async {
        let id = incident.id
        defer { _ = book.withLock { $0.running.remove(id) } }
        guard let incidents = state.incidents else { return }
        var run = PlaybookRun(playbook: playbook, startedAt: Clock.monotonicNow(), startedMs: Clock.wallMilliseconds())
        incidents.playbookEntry(
            id, kind: "playbook_started", detail: "\(playbook.id) (\(playbook.source)): \(playbook.steps.count) steps, SLO \(playbook.slo.wholeNanoseconds / 1_000_000_000) s",
            isResponse: false)
        logger.notice("playbook started", metadata: ["incident": "\(incident.name)", "playbook": "\(playbook.id)"])
        while let step = run.current(at: Clock.monotonicNow(), level: state.health.level) {
            let deadline = run.attemptDeadline(at: Clock.monotonicNow())
            let result = await carryOut(step, incident: id, deadline: deadline)
            let detail: String
            switch result {
            case .succeeded(let text): detail = "\(step.name) (\(step.action.rawValue)): \(text)"
            case .failed(let text): detail = "\(step.name) (\(step.action.rawValue)) failed: \(text)"
            }
            let progress = run.report(result)
            var kind = "playbook_step"
            if case .retrying(let attempt, _) = progress { kind = "playbook_retry \(attempt)/\(step.retries)" }
            incidents.playbookEntry(id, kind: kind, detail: detail, isResponse: !step.action.onlyObserves)
        }
        let agents = playbookAgents(id)
        let recovered = agents.filter { condition($0) == .alive }.count
        let record = run.record(at: Clock.monotonicNow(), recovered: recovered, of: agents.count)
        incidents.playbookEntry(id, kind: "playbook_finished", detail: record.summary, isResponse: false, record: record)
        logger.notice("playbook finished", metadata: ["incident": "\(incident.name)", "record": "\(record.summary)"])
    }

    /// The agents a run is judged by: the incident's, as it is now.
    private func playbookAgents(_ id: Int64) -> [String] {
        (state.incidents?.open.first { $0.id == id }?.agents) ?? []
    }

    private func condition(_ name: String) -> AgentCondition? {
        state.registry.resolve(name).flatMap { state.registry.condition(of: $0.id) }
    }

    @_optimize(size)  // cold: an incident's playbook (the 25 MB budget)
    private func targets(_ step: PlaybookStep, incident id: Int64) -> [String] {
        switch step.target {
        case .incident: return playbookAgents(id)
        case .critical:
            guard let supervisor = state.supervisor else { return [] }
            let critical = supervisor.criticalAgents()
            return supervisor.loadedManifests().values.filter { $0.critical }.map(\.name).filter { name in
                state.registry.resolve(name).map { critical.contains($0.id) } ?? false
            }.sorted()
        }
    }

    /// Polls `check` until it holds or `deadline` passes; its last message says why not.
    private func waitUntil(_ deadline: Instant, _ check: () -> (ok: Bool, why: String)) async -> PlaybookRun.StepResult {
        while true {
            let (ok, why) = check()
            if ok { return .succeeded(why) }
            if Clock.monotonicNow() >= deadline { return .failed(why) }
            try? await Task.sleep(for: Self.pollEvery)
        }
    }

    @_optimize(size)  // cold: an incident's playbook steps (the 25 MB budget)
    private func carryOut(_ step: PlaybookStep, incident id: Int64, deadline: Instant) async -> PlaybookRun.StepResult {
        guard let supervisor = state.supervisor, let incidents = state.incidents else { return .failed("the lead is still starting") }
        switch step.action {
        case .assess:
            let snapshot = state.health.snapshot
            let counts = state.registry.healthCounts(at: Clock.monotonicNow(), expected: supervisor.expectedAgents())
            let ram = snapshot.agentsMemoryBytes.map { "\($0 >> 20) MiB" } ?? "unknown"
            let budget = snapshot.ramBudgetBytes.map { " of \($0 >> 20) MiB" } ?? ""
            let score = state.node.latest.impedance.score
            return .succeeded("node score \(score), agents' RAM \(ram)\(budget), \(snapshot.level.rawValue); \(counts.healthy) of \(counts.total) agents healthy")

        case .restartAgents:
            // The supervisor itself restarts an exited agent (at once the first time: seed
            // 002's forced restart; later after its backoff, which only an operator resets) and
            // heals a hung one after `supervision.heal_after_ms`; killing at the first
            // suspicion would undo that grace. The step sees that it happened.
            let names = targets(step, incident: id)
            return await waitUntil(deadline) {
                let down = names.filter { name in
                    guard let view = supervisor.processView(name), view.supervised, !view.stopped else { return false }
                    return !view.running && !view.restartScheduled
                }
                let waiting = down.filter { supervisor.processView($0)?.awaiting == true }
                if !waiting.isEmpty { return (false, "waiting for an operator: \(waiting.joined(separator: ", ")) (`pimesh heal`)") }
                return down.isEmpty ? (true, names.isEmpty ? "no agents" : "running or restarting: \(names.joined(separator: ", "))") : (false, "not running: \(down.joined(separator: ", "))")
            }

        case .restartCritical:
            let alreadyDone = book.withLock { !$0.emergencyRestarted.insert(id).inserted }
            guard !alreadyDone else { return .succeeded("already ran once for this incident") }
            let snapshot = state.health.snapshot
            let score = state.node.latest.impedance.score
            guard PlaybookAction.nodeHealthyForEmergencyRestart(nodeScore: Double(score), overRAMBudget: snapshot.memoryOverBudget) else {
                return .failed("the node itself is not healthy (score \(score), over the RAM budget: \(snapshot.memoryOverBudget)): restarts wait for `pimesh heal`")
            }
            let names = targets(PlaybookStep(name: "", action: .healthCheck, timeout: .seconds(1), target: .critical), incident: id)
            var restarted: [String] = []
            for name in names where condition(name) != .alive {
                guard let view = supervisor.processView(name), view.supervised, !view.stopped else { continue }
                // Already started again and not heartbeating yet: killing it would only delay it.
                if view.running, ![.hung, .looping, .suspected].contains(condition(name)) { continue }
                if (try? supervisor.heal(name, reason: "emergency parallel restart (\(Incident.name(id)))", byOperator: false)) != nil {
                    restarted.append(name)
                }
            }
            return .succeeded(restarted.isEmpty ? "every critical agent was already heartbeating" : "restarted together: \(restarted.joined(separator: ", "))")

        case .healthCheck:
            let names = targets(step, incident: id)
            return await waitUntil(deadline) {
                // Stopped, frozen or gone on purpose is not silence.
                let silent = names.filter { condition($0) != .alive && condition($0)?.isOutOnPurpose != true && supervisor.processView($0)?.stopped != true }
                return silent.isEmpty ? (true, "heartbeating: \(names.count) agent(s)") : (false, "not heartbeating: \(silent.joined(separator: ", "))")
            }

        case .verifyRunning:
            let wanted = step.minRunning ?? settings.minRunning
            return await waitUntil(deadline) {
                let counts = state.registry.healthCounts(at: Clock.monotonicNow(), expected: supervisor.expectedAgents())
                let share = counts.total == 0 ? 1 : Double(counts.healthy) / Double(counts.total)
                let text = "\(counts.healthy) of \(counts.total) agents healthy (needs \(Int((wanted * 100).rounded())) %)"
                return (share >= wanted, text)
            }

        case .recordDiagnostic:
            let lines = playbookAgents(id).prefix(20).map { name -> String in
                guard let view = supervisor.processView(name) else { return "\(name): not supervised" }
                return "\(name): \(view.restarts) restart(s), last exit \(view.lastExit ?? "none"), log \(view.logPath)"
            }
            return .succeeded(lines.isEmpty ? "no agents named" : lines.joined(separator: "; "))

        case .shedLoad:
            state.health.shed(for: id, true)
            return .succeeded("tasks below priority \(state.health.shedBelowPriority) are shed until \(Incident.name(id)) is mitigated")

        case .freezeLowestPriority:
            let exclude = Set(playbookAgents(id))
            let candidates = supervisor.freezeCandidates().filter { !exclude.contains($0.name) }.prefix(step.count ?? 1)
            var frozen: [String] = []
            for candidate in candidates where (try? supervisor.freeze(candidate.name, true, by: "playbook (\(Incident.name(id)))")) != nil {
                frozen.append(candidate.name)
            }
            book.withLock { $0.frozenBy[id, default: []] += frozen }
            return frozen.isEmpty ? .failed("no running non-critical agent to freeze") : .succeeded("frozen until mitigated: \(frozen.joined(separator: ", "))")

        case .takeSnapshot:
            guard let snapshots = state.snapshots else { return .failed("snapshots are not running") }
            do {
                let made = try await snapshots.takeNow()
                return .succeeded("snapshot \(made.entry.manifest.sequence) taken and verified")
            } catch {
                return .failed("\(error)")
            }

        case .quarantineSnapshot:
            guard let snapshots = state.snapshots else { return .failed("snapshots are not running") }
            do {
                let verification = try await snapshots.verifySpool()
                guard !verification.failures.isEmpty else { return .succeeded("all \(verification.checked) snapshot(s) verify: nothing to quarantine") }
                let moved = try await snapshots.quarantine(verification.failures.map(\.manifest))
                _ = try await snapshots.verifySpool()
                return .succeeded("moved to the spool's quarantine: \(moved.map { $0.split(separator: "/").last.map(String.init) ?? $0 }.joined(separator: ", "))")
            } catch {
                return .failed("\(error)")
            }

        case .analyseRootCause:
            let finding = analyse(id)
            incidents.setRootCause(id, finding.text)
            return .succeeded(finding.text)

        case .rollbackChanged:
            guard let incident = incidents.open.first(where: { $0.id == id }) else { return .succeeded("the incident is resolved") }
            let finding = book.withLock { $0.findings[id] } ?? analyse(id)
            let groupsTotal = Set(state.registry.capabilitiesByName().values.flatMap { $0 }).count
            let decision = GoNoGo.decide(
                finding: finding, elapsed: Clock.monotonicNow() - incident.openedAt,
                groupsAffected: incident.capabilities.count, groupsTotal: groupsTotal)
            guard case .rollBack(let why) = decision else {
                if case .goOn(let why) = decision { return .succeeded("go on: \(why)") }
                return .succeeded("go on")
            }
            let since = Clock.monotonicNow() - RootCause.changeLookback
            let changed = Set(supervisor.history.recentChanges().filter { $0.at >= since }.map(\.agent))
            let candidates = (finding.category == .change ? finding.agents : incident.agents).filter { changed.contains($0) }
            // Only what is still failing: a rollback of an agent that recovered undoes a good change.
            let failing = candidates.filter { condition($0) != .alive }
            guard !failing.isEmpty else { return .succeeded("roll back (\(why)), but no changed agent is still failing") }
            var done: [String] = []
            var refused: [String] = []
            for name in failing {
                do {
                    _ = try supervisor.rollback(name, by: "playbook (\(Incident.name(id)))")
                    done.append(name)
                } catch {
                    refused.append("\(name): \(error)")
                }
            }
            if done.isEmpty { return .failed("roll back (\(why)): " + refused.joined(separator: "; ")) }
            return .succeeded("rolled back \(done.joined(separator: ", ")) (\(why))" + (refused.isEmpty ? "" : "; not: " + refused.joined(separator: "; ")))

        case .awaitOperator:
            return .failed("waits for an operator")
        }
    }

    /// Seed 003's analysis of the incident's failure onsets with what the lead knows.
    @_optimize(size)  // cold: an incident's playbook (the 25 MB budget)
    private func analyse(_ id: Int64) -> RootCause.Finding {
        guard let incidents = state.incidents, let supervisor = state.supervisor,
            let incident = incidents.open.first(where: { $0.id == id })
        else {
            return RootCause.Finding(category: .unknown, summary: "the incident is no longer open", confidence: 0, clusterSize: 0, agents: [])
        }
        let now = Clock.monotonicNow()
        var onsets = incidents.onsets(for: incident, at: now)
        let profiles = state.registry.capabilitiesByName()
        for index in onsets.indices where onsets[index].capabilities.isEmpty {
            onsets[index].capabilities = profiles[onsets[index].agent] ?? []
        }
        var evidence = RootCause.Evidence()
        evidence.leadStartedAt = state.startedAt
        evidence.clockJumpAt = state.health.clockSteppedAt
        evidence.resourceAlarms = incidents.resourceAlarms
        evidence.changes = supervisor.history.recentChanges().map { ($0.agent, $0.at, $0.what) }
        evidence.heartbeatInterval = .milliseconds(Double(state.config.heartbeat.intervalMs))
        let finding = RootCause.analyse(onsets, evidence: evidence)
        book.withLock { $0.findings[id] = finding }
        return finding
    }
}
