import Logging
import PimeshServer
import PimeshSystem
import Synchronization
import PimeshAgent
import PimeshCore
import ServiceLifecycle

/// The lead's health tick (DESIGN.md §4): feeds failure detection with what the shell knows,
/// turns its changes into events and healing, keeps the breakers, canaries and degradation
/// level, migrates orphans, steals work and watches the RAM budget. Each healing step passes
/// its authority tier first; what may not run on its own waits for `pimesh heal`.
final class HealthMonitor: Service, Sendable {
    struct Settings: Sendable {
        var tick: Duration = .milliseconds(100)
        /// A hung or looping supervised agent is restarted, and a suspected attached agent's heal
        /// command runs, once it stayed so this long.
        var unresponsiveRestartAfter: Duration = .seconds(2)
        var stealEvery: Duration = .milliseconds(500)
        var memoryEvery: Duration = .seconds(1)
        var workStealing = true
        var ramBudgetBytes: UInt64?
        var degradation = DegradationLevel.Thresholds()
    }

    let settings: Settings
    let registry: AgentRegistry
    let tasks: TaskService
    let supervisor: Supervisor
    let events: HealthEventLog
    let health: NodeHealth
    let node: NodeState
    let logger: Logger
    let incidents: IncidentService?
    let kpis: KPIRecorder?
    /// Seed 001 EMERGENCY "preserve state to persistent storage": a snapshot on the way in.
    let snapshots: SnapshotService?
    /// Seed 001 §5.1: unresolved conflicts are timed against their resolution deadlines.
    let conflicts: ConflictService?
    let prober: LivenessProber?
    private let memory = MemoryBudgetState()
    private let emergencySnapshot = Mutex<Instant?>(nil)
    static let emergencySnapshotEvery: Duration = .seconds(600)

    init(
        settings: Settings, registry: AgentRegistry, tasks: TaskService, supervisor: Supervisor, events: HealthEventLog,
        health: NodeHealth, node: NodeState, logger: Logger, incidents: IncidentService? = nil, kpis: KPIRecorder? = nil,
        snapshots: SnapshotService? = nil, conflicts: ConflictService? = nil, prober: LivenessProber? = nil
    ) {
        self.prober = prober
        self.snapshots = snapshots
        self.conflicts = conflicts
        self.incidents = incidents
        self.kpis = kpis
        self.settings = settings
        self.registry = registry
        self.tasks = tasks
        self.supervisor = supervisor
        self.events = events
        self.health = health
        self.node = node
        self.logger = logger
    }

    private struct Timers {
        var lastSteal: Instant
        var lastMemory: Instant
        var lastAdopt: Instant
        /// When each hung, looping or suspected agent became so.
        var unresponsive: [AgentID: Instant] = [:]
        /// The supply was low at the last pass: an alert is raised once per episode.
        var underVoltage = false
        /// The last tick that gave the incident triggers a view of the node.
        var lastIncidentObservation: Instant?
        var clockSteps = ClockStepDetector()
    }

    /// A tick in which no agent changed condition and the level stayed gives the incident
    /// triggers no new fact but the passing time, which they need only this often: building
    /// the view of 1,000 agents and judging it every 100 ms was a fifth of the health tick.
    static let quietIncidentObservationEvery: Duration = .milliseconds(500)

    private let timers: Mutex<Timers> = {
        let now = Clock.monotonicNow()
        return Mutex(Timers(lastSteal: now, lastMemory: now - .seconds(3600), lastAdopt: now))
    }()

    func run() async throws {
        // On the supervision thread: a pass reads agents.d, /proc and cgroupfs and may heal.
        // With no agent at all there is nothing to judge: only the 2 s manifest rescan remains.
        await runWhenDue(doorbell: Doorbell()) {
            _ = try? await Blocking.onSupervisionThread { self.pass(now: Clock.monotonicNow()) }
            // From the end of the pass: a slow pass is followed by a pause, not by another pass.
            return Clock.monotonicNow() + (self.registry.count > 0 ? self.settings.tick : .seconds(2))
        }
    }

    func pass(now: Instant) {
        let (memoryDue, adoptDue, stealDue) = timers.withLock { timers in
            let due = (
                now - timers.lastMemory >= settings.memoryEvery, now - timers.lastAdopt >= .seconds(2),
                settings.workStealing && now - timers.lastSteal >= settings.stealEvery
            )
            if due.0 { timers.lastMemory = now }
            if due.1 { timers.lastAdopt = now }
            if due.2 { timers.lastSteal = now }
            return due
        }
        if memoryDue { checkMemory() }
        noticeClockStep()
        let underVoltage = node.latest.readings.underVoltage == true
        let newlyLow = timers.withLock { timers in
            defer { timers.underVoltage = underVoltage }
            return underVoltage && !timers.underVoltage
        }
        if newlyLow {
            let detail = "under-voltage: the Pi's supply is below 4.63 V; a brown-out can corrupt the SD card"
            events.append(kind: "alert", agent: nil, detail: detail)
            logger.critical("\(detail)")
        }
        if adoptDue { supervisor.adoptAttached() }
        prober?.startDue(supervisor.livenessTargets(), at: now)
        var unresponsive = timers.withLock { $0.unresponsive }
        tick(now: now, unresponsive: &unresponsive)
        timers.withLock { $0.unresponsive = unresponsive }
        if stealDue { steal(now: now) }
    }

    /// Deadlines and ages run on the monotonic clock, so a step changes no decision; it is told
    /// all the same, since every wall-clock time around it (events, audit rows, incident
    /// timelines) jumps with it, and an incident's root cause may be the step.
    private func noticeClockStep() {
        // Both read together, not the pass's `now`: a slow memory check before this would
        // otherwise look like a step.
        let wallMs = Clock.wallMilliseconds()
        let now = Clock.monotonicNow()
        let (report, steppedAt) = timers.withLock { ($0.clockSteps.observe(wallMs: wallMs, now: now), $0.clockSteps.lastStepAt) }
        if let steppedAt { health.clockSteppedAt = steppedAt }
        guard let report else { return }
        let detail = "the wall clock \(report.text) (NTP, fake-hwclock or date -s): times shown before and after differ by that much"
        events.append(kind: "clock_stepped", agent: nil, detail: detail, atMs: wallMs)
        logger.warning("\(detail)")
    }

    /// One pass; `unresponsive` holds when each hung/looping/suspected agent became so.
    func tick(now: Instant, unresponsive: inout [AgentID: Instant]) {
        let wallNow = Clock.wallMilliseconds()
        let expected = supervisor.expectedAgents()
        let (changes, counts) = registry.evaluateHealth(
            at: now, outstanding: tasks.workingByAgent, liveness: supervisor.liveness(), expected: expected)
        let level = health.level
        for change in changes {
            let atMs = wallNow - Int64((now - change.change.since).milliseconds.rounded())
            events.append(
                kind: change.change.to.rawValue, agent: change.name, detail: "\(change.change.from.rawValue) → \(change.change.to.rawValue): \(change.change.reason)",
                atMs: atMs)
            logger.notice(
                "agent \(change.change.to.rawValue)", metadata: ["agent": "\(change.name)", "why": "\(change.change.reason)"])
            if change.change.to.isFailure {
                if !change.change.from.isFailure {
                    for (group, transition) in registry.recordGroupFailure(of: change.name, capabilities: change.capabilities, at: now) {
                        events.append(kind: "group_breaker", agent: nil, detail: "\(group): \(transition)", tier: .l0)
                    }
                }
                if HealingAction.migrateOrphans.tier.runsAutomatically(at: level) {
                    let moved = tasks.migrateOrphans(of: change.id, agentFailed: true, now: now)
                    if moved.moved > 0 {
                        health.recordStep(HealingAction.migrateOrphans.tier, due: change.change.since, done: Clock.monotonicNow())
                        events.append(kind: "orphans_migrated", agent: change.name, detail: moved.summary, tier: .l0)
                    }
                }
                if change.change.to != .exited { unresponsive[change.id] = change.change.since }
            } else {
                unresponsive[change.id] = nil
                // Gone without failing (a clean exit): what it held goes elsewhere, as after
                // a goodbye, and counts against nothing.
                if change.change.to == .left, !change.change.from.isFailure {
                    let moved = tasks.migrateOrphans(of: change.id, now: now)
                    if moved.moved > 0 { events.append(kind: "orphans_migrated", agent: change.name, detail: moved.summary, tier: .l0) }
                }
            }
        }
        for (id, since) in unresponsive where now - since >= settings.unresponsiveRestartAfter {
            unresponsive[id] = nil
            guard let condition = registry.condition(of: id), let managed = supervisor.isSupervised(id) else { continue }
            switch UnresponsiveHealing.decide(
                condition: condition, since: since, now: now, after: settings.unresponsiveRestartAfter,
                supervised: managed.mode == .supervised, level: level)
            {
            case .notYet:
                continue
            case .heal(let action, let due, let reason):
                if (try? supervisor.heal(managed.name, reason: reason, byOperator: false)) != nil {
                    health.recordStep(action.tier, due: due, done: Clock.monotonicNow())
                }
            case .awaitOperator(let action, let reason):
                supervisor.await(managed.name, action: action, reason: reason)
            }
        }
        supervisor.rejudgeAwaiting(level: level) { self.registry.condition(of: $0) }
        for (group, transition) in registry.tickGroupBreakers(at: now) {
            events.append(kind: "group_breaker", agent: nil, detail: "\(group): \(transition)", tier: .l0)
        }
        let readings = node.latest.readings
        let utilisation = (readings.loadAverage ?? 0) / Double(max(1, readings.cpuCount))
        for moved in registry.evaluateCanaries(
            at: now, utilisation: utilisation, queueLatencyMs: tasks.queueLatencies(now: now),
            mayAdvance: DegradationPolicy(level: level).canariesAdvance)
        {
            events.append(kind: "canary", agent: moved.name, detail: moved.limit.map { "may hold \($0) tasks" } ?? "ramp complete: no limit")
        }
        let memoryOver = memory.overBudget
        let healthyShare = DegradationPolicy.healthyShare(healthy: counts.healthy, of: counts.total)
        kpis?.recordActiveShare(healthyShare, at: now)
        let newLevel = DegradationPolicy.level(
            healthyRatio: healthyShare ?? 1, agents: counts.total,
            memoryOverBudget: memoryOver, thresholds: settings.degradation)
        if let previous = health.update({ $0.level = newLevel }) {
            let restrictions = DegradationPolicy(level: newLevel).restrictions
            events.append(
                kind: "degradation", agent: nil,
                detail: "\(previous.rawValue) → \(newLevel.rawValue): \(counts.healthy) of \(counts.total) agents healthy"
                    + (memoryOver ? ", agents over the RAM budget" : "")
                    + (restrictions.isEmpty ? "" : "; " + restrictions.joined(separator: "; ")))
            logger.notice("degradation level", metadata: ["from": "\(previous.rawValue)", "to": "\(newLevel.rawValue)"])
            if DegradationPolicy(level: newLevel).preservesStateAndAlerts && !DegradationPolicy(level: previous).preservesStateAndAlerts {
                enterEmergency(healthy: counts.healthy, total: counts.total)
            }
        }
        let levelChanged = newLevel != level
        let observeIncidents = timers.withLock { timers in
            let due = !changes.isEmpty || levelChanged || incidents?.hasUnseenIntegrityFailure == true
                || timers.lastIncidentObservation.map { now - $0 >= Self.quietIncidentObservationEvery } ?? true
            if due { timers.lastIncidentObservation = now }
            return due
        }
        if let incidents, observeIncidents {
            let snapshot = health.snapshot
            // An agent that failed since the last tick is down for this one, even if it already
            // runs again (an immediate restart): the failure is the fault an incident records.
            let failedThisTick = Set(changes.filter { $0.change.to.isFailure }.map(\.name))
            var agents = registry.incidentView(at: now, expected: expected, critical: supervisor.criticalAgents())
            for index in agents.indices where failedThisTick.contains(agents[index].name) {
                agents[index].down = true
                agents[index].healthy = false
            }
            var observation = IncidentObservation(
                agents: agents, degradation: newLevel, agentsMemoryBytes: snapshot.agentsMemoryBytes, ramBudgetBytes: snapshot.ramBudgetBytes)
            observation.givenUp = supervisor.summary.failed
            observation.declared = supervisor.declaredNames()
            observation.quarantined = registry.quarantinedNames()
            observation.conflicting = registry.conflictingNames(at: now)
            observation.unresolvedConflicts = conflicts?.unresolvedConflicts(at: now) ?? []
            let latest = node.latest
            observation.nodeScore = latest.impedance.score
            observation.underVoltage = latest.readings.underVoltage == true
            observation.throttled = latest.readings.throttled == true
            observation.missedKPIs = kpis?.indicators.filter { $0.met == false && $0.warnsOnMiss }.map(\.name) ?? []
            incidents.observe(observation, at: now)
        }
    }

    /// Seed 001 EMERGENCY: "alert all human operators" (an `alert` event, which the audit log
    /// records and `pimesh events` shows, beside the SEV1 incident and its LED code) and
    /// "preserve state to persistent storage" (a snapshot, taken off the supervision thread).
    private func enterEmergency(healthy: Int, total: Int) {
        let detail = "EMERGENCY: \(healthy) of \(total) agents healthy; automatic healing stopped, operators alerted"
        events.append(kind: "alert", agent: nil, detail: detail)
        logger.critical("\(detail)")
        guard let snapshots else { return }
        // A node flapping in and out of EMERGENCY must not fill the spool with copies of the
        // same state and push out the snapshots from before the trouble: one at a time, at
        // most one per `emergencySnapshotEvery`.
        let now = Clock.monotonicNow()
        let due = emergencySnapshot.withLock { last -> Bool in
            if let last, now - last < Self.emergencySnapshotEvery { return false }
            last = now
            return true
        }
        guard due else {
            events.append(kind: "state_preserved", agent: nil, detail: "a snapshot was taken on entering EMERGENCY less than 10 min ago; not repeated")
            return
        }
        Task { [events, logger] in
            do {
                let made = try await snapshots.takeNow()
                events.append(kind: "state_preserved", agent: nil, detail: "snapshot \(made.entry.manifest.sequence) taken on entering EMERGENCY")
            } catch {
                events.append(kind: "state_preserved", agent: nil, detail: "the snapshot on entering EMERGENCY failed: \(error)")
                logger.error("emergency snapshot failed", metadata: ["error": "\(error)"])
            }
        }
    }

    private func steal(now: Instant) {
        guard HealingAction.stealWork.tier.runsAutomatically(at: health.level) else { return }
        for move in tasks.stealWork(now: now) {
            events.append(
                kind: "work_stolen", agent: move.to, detail: "\(move.count) \(move.capability) task(s) from \(move.from)", tier: .l0)
        }
    }

    private func checkMemory() {
        let usages = supervisor.measureMemory()
        let verdict = MemoryBudget(budgetBytes: settings.ramBudgetBytes).evaluate(usages)
        let wasOver = memory.overBudget
        memory.overBudget = verdict.overBudget
        _ = health.update {
            $0.agentsMemoryBytes = verdict.totalBytes
            $0.ramBudgetBytes = self.settings.ramBudgetBytes
            $0.memoryOverBudget = verdict.overBudget
        }
        if verdict.overBudget != wasOver {
            events.append(
                kind: verdict.overBudget ? "ram_budget_exceeded" : "ram_budget_ok", agent: nil,
                detail: "agents use \(verdict.totalBytes >> 20) MiB of a \((settings.ramBudgetBytes ?? 0) >> 20) MiB budget")
        }
        let level = health.level
        for name in verdict.overLimit {
            let usage = usages.first { $0.name == name }
            let reason = "uses \((usage?.bytes ?? 0) >> 20) MiB, over its memory_limit_mb \((usage?.limitBytes ?? 0) >> 20)"
            if HealingAction.restartOverMemory.tier.runsAutomatically(at: level) {
                _ = try? supervisor.heal(name, reason: reason, byOperator: false)
            } else {
                supervisor.await(name, action: .restartOverMemory, reason: reason)
            }
        }
    }
}

/// Whether the agents were over the RAM budget at the last reading.
final class MemoryBudgetState: Sendable {
    private let value = Atomic<Bool>(false)

    var overBudget: Bool {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }
}
