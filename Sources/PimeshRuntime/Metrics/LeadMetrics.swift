import CoreMetrics
import PimeshAgent
import PimeshCore
import Prometheus
import Synchronization

/// `/metrics`: swift-metrics handles backed by one swift-prometheus registry per lead.
///
/// Events (a task accepted or finished, a scatter-gather decided, a conflict) update their
/// metric when they happen. Everything that already has a counter or a live figure elsewhere
/// (heartbeats, agent states, scores, KPIs) is copied in when `/metrics` is scraped, so the
/// heartbeat path does no metrics work at all. No series is per agent: agents are unbounded,
/// and `GET /v1/agents` has the per-agent figures.
final class LeadMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    private let tasksAccepted: [Bool: CoreMetrics.Counter]
    private let tasksFinished: [TaskState: CoreMetrics.Counter]
    private let acceptLatency: CoreMetrics.Timer
    private let taskDuration: CoreMetrics.Timer
    private let gatherDecisions: [TrinaryQuorum.Decision: CoreMetrics.Counter]
    private let gatherDuration: CoreMetrics.Timer
    private let conflicts: [ConflictType: CoreMetrics.Counter]

    private let heartbeatsAccepted: CoreMetrics.Counter
    private let heartbeatsDropped: [HeartbeatDropReason: CoreMetrics.Counter]
    /// What the scrape-time counters held after the last scrape, to add only the difference.
    private let exported = Mutex<[String: Int]>([:])

    private let agentsByState: [TrinaryState: Meter]
    private let agentsQuarantined: Meter
    private let agentsDegraded: Meter
    private let agentsUnstable: Meter
    private let meanScore: Meter
    private let p95Score: Meter
    private let nodeScore: Meter
    private let nodeFactors: [String: Meter]
    private let underVoltage: Meter
    private let writtenLastDay: Meter
    private let writeBudget: Meter
    private let checkpointStretch: Meter
    private let memory: [String: Meter]
    private let openTasks: [TaskState: Meter]
    private let kpiValues: [String: Meter]
    private let kpiTargets: [String: Meter]
    private let agentsByCondition: [AgentCondition: Meter]
    private let degradationLevel: Meter
    private let agentRestarts: Meter
    private let tierSteps: [String: Meter]
    private let tierStepsWithinSLA: [String: Meter]
    private let tierWorst: [String: Meter]
    private let agentsMemory: Meter
    private let incidentsOpen: [Severity: Meter]
    private let incidentMeanMs: [String: Meter]

    /// Seconds; a Pi's tasks take from tens of milliseconds to a few seconds.
    static let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    init() {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        self.registry = registry
        self.factory = factory
        func counter(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(
                label: name, dimensions: labels, handler: registry.makeCounter(name: name, labels: labels, help: help), factory: factory)
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Meter {
            Meter(label: name, dimensions: labels, handler: registry.makeGauge(name: name, labels: labels, help: help), factory: factory)
        }
        func timer(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> CoreMetrics.Timer {
            CoreMetrics.Timer(
                label: name, dimensions: labels,
                handler: registry.makeDurationHistogram(name: name, labels: labels, buckets: Self.durationBuckets, help: help),
                factory: factory)
        }
        tasksAccepted = [
            false: counter("pimesh_tasks_accepted_total", "Tasks submitted and committed, by routing decision.", [("decision", "send_now")]),
            true: counter("pimesh_tasks_accepted_total", "Tasks submitted and committed, by routing decision.", [("decision", "skip")]),
        ]
        tasksFinished = Dictionary(
            uniqueKeysWithValues: TaskState.allCases.filter(\.isTerminal).filter { $0 != .skipped }.map {
                ($0, counter("pimesh_tasks_finished_total", "Tasks that reached a final state, by state.", [("state", $0.rawValue)]))
            })
        acceptLatency = timer("pimesh_task_accept_seconds", "From a submission's arrival to its durable commit (the cost of durability).")
        taskDuration = timer("pimesh_task_duration_seconds", "From handing a task to an agent to its result.")
        gatherDecisions = Dictionary(
            uniqueKeysWithValues: [TrinaryQuorum.Decision.proceed, .wait, .resolveConflicts, .retry].map {
                ($0, counter("pimesh_gather_operations_total", "Ask and broadcast operations, by quorum decision.", [("decision", $0.rawValue)]))
            })
        gatherDuration = timer("pimesh_gather_duration_seconds", "Ask and broadcast from the first send to the quorum decision.")
        conflicts = Dictionary(
            uniqueKeysWithValues: ConflictType.allCases.map {
                ($0, counter("pimesh_conflicts_total", "Conflicts appended to the conflict log, by type.", [("type", $0.rawValue)]))
            })
        heartbeatsAccepted = counter("pimesh_heartbeats_accepted_total", "Heartbeat datagrams accepted.")
        heartbeatsDropped = Dictionary(
            uniqueKeysWithValues: HeartbeatDropReason.allCases.map {
                ($0, counter("pimesh_heartbeats_dropped_total", "Heartbeat datagrams dropped, by reason.", [("reason", $0.description)]))
            })
        agentsByState = Dictionary(
            uniqueKeysWithValues: TrinaryState.allCases.map {
                ($0, gauge("pimesh_agents", "Registered agents by trinary state.", [("state", $0.description)]))
            })
        agentsByCondition = Dictionary(
            uniqueKeysWithValues: AgentCondition.allCases.map {
                ($0, gauge("pimesh_agents_health", "Agents by what failure detection believes.", [("condition", $0.rawValue)]))
            })
        degradationLevel = gauge(
            "pimesh_degradation_level", "Seed 001 operational mode: 0 FULL, 1 DEGRADED_LIGHT, 2 DEGRADED_MODERATE, 3 DEGRADED_SEVERE, 4 EMERGENCY.")
        agentRestarts = gauge("pimesh_agent_restarts", "Restarts of supervised agents since the lead started.")
        let tiers = AuthorityTier.allCases.map(\.rawValue)
        tierSteps = Dictionary(uniqueKeysWithValues: tiers.map {
            ($0, gauge("pimesh_tier_steps", "Healing steps carried out since the lead started, by authority tier.", [("tier", $0)]))
        })
        tierStepsWithinSLA = Dictionary(uniqueKeysWithValues: tiers.map {
            ($0, gauge("pimesh_tier_steps_within_sla", "Healing steps done within their tier's SLA (L0 100 ms, L1 1 s, L2 10 s) from due.", [("tier", $0)]))
        })
        tierWorst = Dictionary(uniqueKeysWithValues: tiers.map {
            ($0, gauge("pimesh_tier_response_worst_seconds", "The slowest healing step of the tier, from due to done.", [("tier", $0)]))
        })
        agentsMemory = gauge("pimesh_agents_memory_bytes", "Memory of all supervised agents (cgroup or private resident).")
        incidentsOpen = Dictionary(
            uniqueKeysWithValues: Severity.allCases.map {
                ($0, gauge("pimesh_incidents_open", "Incidents not resolved yet, by severity.", [("severity", "\($0)")]))
            })
        incidentMeanMs = Dictionary(
            uniqueKeysWithValues: ["mitigate", "resolve"].map {
                ($0, gauge("pimesh_incident_mean_time_to_\($0)_seconds", "Mean from detection to \($0 == "mitigate" ? "mitigation" : "resolution") over the incidents this lead resolved."))
            })
        agentsQuarantined = gauge("pimesh_agents_quarantined", "Agents held out of routing after a conflict.")
        agentsDegraded = gauge("pimesh_agents_degraded", "Agents with an impedance score above 800.")
        agentsUnstable = gauge("pimesh_agents_unstable", "Agents with drift above 0.5.")
        meanScore = gauge("pimesh_agent_score_mean", "Mean impedance score of all agents (0 best, 1000 worst).")
        p95Score = gauge("pimesh_agent_score_p95", "95th percentile impedance score of all agents.")
        nodeScore = gauge("pimesh_node_score", "The node's own impedance score (0 best, 1000 worst).")
        nodeFactors = Dictionary(uniqueKeysWithValues: ["cpu", "memory", "io", "thermal", "headroom", "tasks", "storage", "power"].map {
            ($0, gauge("pimesh_node_factor", "What is left of the node for work, by factor (1 all, 0 none); the score is 1000 × (1 − their product).", [("factor", $0)]))
        })
        underVoltage = gauge("pimesh_node_under_voltage", "1 while the Pi's supply is below 4.63 V, 0 when not, absent without a sensor.")
        writtenLastDay = gauge("pimesh_lead_written_bytes_last_day", "Bytes the lead wrote to storage in the last 24 hours (/proc/self/io).")
        writeBudget = gauge("pimesh_lead_write_budget_bytes_per_day", "store.write_budget_mb_per_day in bytes (0: none).")
        checkpointStretch = gauge("pimesh_checkpoint_stretch", "How many times longer checkpoint intervals are while the lead writes ahead of its budget.")
        memory = Dictionary(
            uniqueKeysWithValues: ["rss", "pss", "private_anonymous"].map {
                ($0, gauge("pimesh_memory_bytes", "The lead's own memory, by kind.", [("kind", $0)]))
            })
        openTasks = Dictionary(
            uniqueKeysWithValues: [TaskState.queued, .assigned, .running].map {
                ($0, gauge("pimesh_tasks_open", "Accepted tasks not yet finished, by state.", [("state", $0.rawValue)]))
            })
        let names = CoordinationKPIs().indicators(at: Instant(nanoseconds: 0)).map(\.name)
        kpiValues = Dictionary(
            uniqueKeysWithValues: names.flatMap { name in
                CoordinationKPIs.Window.allCases.map { window in
                    (
                        "\(name)/\(window.rawValue)",
                        gauge(
                            "pimesh_kpi", "Seed 001 KPIs over the last hour, day and month (ratios, or ms for cascade latency and recovery time).",
                            [("kpi", name), ("window", window.rawValue)])
                    )
                }
            })
        kpiTargets = Dictionary(
            uniqueKeysWithValues: names.map {
                ($0, gauge("pimesh_kpi_target", "The seed's target for each KPI.", [("kpi", $0)]))
            })
    }

    func taskAccepted(after duration: Duration, skipped: Bool) {
        tasksAccepted[skipped]?.increment()
        acceptLatency.recordNanoseconds(duration.wholeNanoseconds)
    }

    func taskFinished(state: TaskState, after duration: Duration?) {
        tasksFinished[state]?.increment()
        if let duration { taskDuration.recordNanoseconds(duration.wholeNanoseconds) }
    }

    func gatherFinished(decision: TrinaryQuorum.Decision, after duration: Duration) {
        gatherDecisions[decision]?.increment()
        gatherDuration.recordNanoseconds(duration.wholeNanoseconds)
    }

    func conflictRecorded(_ type: ConflictType) {
        conflicts[type]?.increment()
    }

    /// Copies the live figures in and renders the Prometheus text format.
    @_optimize(size)  // cold: a scrape every few seconds at most (the 25 MB budget)
    func render(status: StatusReport, heartbeats: HeartbeatCounters, openTasks open: [TaskState: Int]) -> [UInt8] {
        exported.withLock { last in
            func add(_ counter: CoreMetrics.Counter?, key: String, total: Int) {
                let delta = total - (last[key] ?? 0)
                if delta > 0 { counter?.increment(by: Int64(delta)) }
                last[key] = max(total, last[key] ?? 0)
            }
            add(heartbeatsAccepted, key: "accepted", total: heartbeats.accepted)
            for entry in heartbeats.droppedByReason {
                add(heartbeatsDropped[entry.reason], key: "dropped." + entry.reason.description, total: entry.count)
            }
        }
        agentsByState[.ready]?.set(status.agents.ready)
        agentsByState[.transit]?.set(status.agents.transit)
        agentsByState[.conflict]?.set(status.agents.conflict)
        agentsQuarantined.set(status.agents.quarantined.count)
        agentsDegraded.set(status.agents.degraded)
        agentsUnstable.set(status.agents.unstable)
        meanScore.set(status.agents.meanScore ?? 0)
        p95Score.set(status.agents.p95Score ?? 0)
        nodeScore.set(status.node.score)
        let factors = status.node.factors
        for (name, value) in [
            ("cpu", factors.cpu), ("memory", factors.memory), ("io", factors.io), ("thermal", factors.thermal), ("headroom", factors.headroom),
            ("tasks", factors.tasks), ("storage", factors.storage), ("power", factors.power),
        ] {
            nodeFactors[name]?.set(value)
        }
        underVoltage.set(status.node.readings.underVoltage.map { $0 ? 1.0 : 0.0 } ?? .nan)
        if let writes = status.node.writes {
            writtenLastDay.set(Double(writes.lastDayBytes))
            writeBudget.set(Double(writes.budgetBytesPerDay))
            checkpointStretch.set(writes.checkpointStretch)
        }
        memory["rss"]?.set(Double(status.rssBytes))
        memory["pss"]?.set(Double(status.pssBytes))
        memory["private_anonymous"]?.set(Double(status.privateAnonymousBytes))
        for (state, meter) in openTasks { meter.set(open[state] ?? 0) }
        if let health = status.health {
            for (condition, meter) in agentsByCondition { meter.set(health.conditions[condition.rawValue] ?? 0) }
            degradationLevel.set(DegradationLevel.allCases.firstIndex { $0.rawValue == health.level } ?? 0)
            agentRestarts.set(health.restarts)
            for tier in health.tiers {
                tierSteps[tier.tier]?.set(tier.steps)
                tierStepsWithinSLA[tier.tier]?.set(tier.withinSla)
                tierWorst[tier.tier]?.set((tier.worstMs ?? 0) / 1000)
            }
            agentsMemory.set(Double(health.agentsMemoryBytes ?? 0))
        }
        if let incidents = status.incidents {
            for (severity, meter) in incidentsOpen { meter.set(incidents.openBySeverity["\(severity)"] ?? 0) }
            incidentMeanMs["mitigate"]?.set((incidents.meanMitigateMs ?? 0) / 1000)
            incidentMeanMs["resolve"]?.set((incidents.meanResolveMs ?? 0) / 1000)
        }
        for kpi in status.kpis {
            // NaN is valid in the text format and says "not measured yet" better than 0.
            for measured in kpi.windows { kpiValues["\(kpi.name)/\(measured.window)"]?.set(measured.value ?? .nan) }
            kpiTargets[kpi.name]?.set(kpi.target)
        }
        return registry.emitToBuffer()
    }
}
