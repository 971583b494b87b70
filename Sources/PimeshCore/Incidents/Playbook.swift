/// Seed 002's playbooks, declarative: which incidents a playbook answers, its steps (each an
/// action the runtime has), and how a run is judged. The built-in ones and the operator's
/// (`playbooks.d/*.json`) have one shape; docs/incidents.md lists every key.
public struct Playbook: Sendable, Equatable {
    public var id: String
    public var title: String
    /// Where it came from: `built-in` or the file.
    public var source: String
    /// Runs on an incident that holds a cause starting with one of these (`agent_down:`,
    /// `critical_agents_down`, `integrity:snapshot`, …), once it is at least `minSeverity`.
    public var causes: [String]
    public var minSeverity: Severity
    /// Seed 002: the most a run may take (single agent 60 s, emergency 120 s).
    public var slo: Duration
    /// The share of the incident's agents heartbeating again at the end for the run to
    /// count as a success (seed 002's emergency: 2/3 of the critical agents).
    public var minRecovered: Double
    public var steps: [PlaybookStep]

    public static let maxSteps = 32

    public init(
        id: String, title: String, source: String = "built-in", causes: [String], minSeverity: Severity = .sev4, slo: Duration,
        minRecovered: Double = 1, steps: [PlaybookStep]
    ) {
        self.id = id
        self.title = title
        self.source = source
        self.causes = causes
        self.minSeverity = minSeverity
        self.slo = slo
        self.minRecovered = minRecovered
        self.steps = steps
    }

    public func answers(causes incidentCauses: [String], severity: Severity) -> Bool {
        severity >= minSeverity && incidentCauses.contains { cause in causes.contains { cause.hasPrefix($0) } }
    }
}

public struct PlaybookStep: Sendable, Equatable {
    public var name: String
    public var action: PlaybookAction
    /// How long one attempt may take.
    public var timeout: Duration
    /// Attempts after the first that failed.
    public var retries: Int
    /// A required step that fails stops the run; any other lets it go on (seed 002's
    /// "continue if fails").
    public var required: Bool
    /// The most trusted tier that may run it unattended; run only while the node's
    /// degradation level lets that tier act (`AuthorityTier.runsAutomatically`).
    public var tier: AuthorityTier
    /// `verify_running`: the share of supervised agents that must be heartbeating.
    public var minRunning: Double?
    /// `freeze_lowest_priority`: how many agents.
    public var count: Int?
    /// `health_check` and `restart_agents`: the incident's agents or the node's critical ones.
    public var target: PlaybookTarget

    public static let maxRetries = 10
    public static let maxTimeout = Duration.seconds(600)

    public init(
        name: String, action: PlaybookAction, timeout: Duration, retries: Int = 0, required: Bool = true, tier: AuthorityTier? = nil,
        minRunning: Double? = nil, count: Int? = nil, target: PlaybookTarget = .incident
    ) {
        self.name = name
        self.action = action
        self.timeout = timeout
        self.retries = retries
        self.required = required
        self.tier = tier ?? action.defaultTier
        self.minRunning = minRunning
        self.count = count
        self.target = target
    }
}

public enum PlaybookTarget: String, Sendable, Equatable, CaseIterable {
    case incident
    case critical
}

/// What a step can do: each is something the runtime carries out (docs/incidents.md).
public enum PlaybookAction: String, Sendable, Equatable, CaseIterable {
    /// Record the node's state (score, RAM, agents up and down) in the timeline.
    case assess
    /// Every target agent running again, as the supervisor restarts and heals them (its
    /// backoff and heal grace apply; only an operator resets a backoff).
    case restartAgents = "restart_agents"
    /// Seed 002's parallel restart of the critical agents, at most once per incident and only
    /// while the node itself is healthy (score ≤ 800, inside the RAM budget).
    case restartCritical = "restart_critical"
    /// Every target agent heartbeating.
    case healthCheck = "health_check"
    /// At least `min_running` of the supervised agents heartbeating.
    case verifyRunning = "verify_running"
    /// Each agent's exits, restarts and log file in the timeline (the seed's diagnostic task).
    case recordDiagnostic = "record_diagnostic"
    /// Refuse non-urgent new work until the incident is mitigated.
    case shedLoad = "shed_load"
    /// Freeze the `count` lowest-priority running agents until the incident is mitigated.
    case freezeLowestPriority = "freeze_lowest_priority"
    /// Take a snapshot now.
    case takeSnapshot = "take_snapshot"
    /// Move the snapshots that failed verification out of the spool.
    case quarantineSnapshot = "quarantine_snapshot"
    /// Seed 003: name the likely cause of the incident's failures (`RootCause`).
    case analyseRootCause = "analyse_root_cause"
    /// Put back the last good manifest of agents whose manifest changed in the last 10 min,
    /// when the root cause is that change (or the go/no-go rules say roll back).
    case rollbackChanged = "rollback_changed"
    /// Stop here and leave the rest to `pimesh heal`; never runs unattended.
    case awaitOperator = "await_operator"

    /// Reading and recording change nothing on the node: they run at every degradation level.
    public var onlyObserves: Bool {
        switch self {
        case .assess, .healthCheck, .verifyRunning, .recordDiagnostic, .analyseRootCause: true
        default: false
        }
    }

    /// Whether `step` may run unattended at `level`. The emergency restart of the critical
    /// agents is the one exception to the tiers the issue's decision allows: it runs at any
    /// level, once, while the node itself is healthy (`nodeHealthyForEmergencyRestart`).
    public func mayRun(tier: AuthorityTier, at level: DegradationLevel) -> Bool {
        onlyObserves || self == .restartCritical || tier.runsAutomatically(at: level)
    }

    public static func nodeHealthyForEmergencyRestart(nodeScore: Double, overRAMBudget: Bool) -> Bool {
        nodeScore <= 800 && !overRAMBudget
    }

    public var defaultTier: AuthorityTier {
        switch self {
        case .assess, .healthCheck, .verifyRunning, .recordDiagnostic, .analyseRootCause, .takeSnapshot: .l0
        case .restartAgents, .restartCritical, .shedLoad, .freezeLowestPriority, .quarantineSnapshot, .rollbackChanged: .l1
        case .awaitOperator: .l2
        }
    }
}

/// The playbooks in force: the operator's first (by file name), then the built-in ones an
/// operator's playbook of the same id does not replace.
public struct PlaybookCatalog: Sendable {
    public private(set) var playbooks: [Playbook]

    public init(builtIn: [Playbook], operator operatorPlaybooks: [Playbook]) {
        let replaced = Set(operatorPlaybooks.map(\.id))
        playbooks = operatorPlaybooks + builtIn.filter { !replaced.contains($0.id) }
    }

    /// The playbook for an incident now: the first that answers its causes and severity.
    public func playbook(causes: [String], severity: Severity) -> Playbook? {
        playbooks.first { $0.answers(causes: causes, severity: severity) }
    }
}

/// One run of a playbook, as seed 002 reports it.
public struct PlaybookRunRecord: Codable, Sendable, Equatable {
    public var playbook: String
    public var startedMs: Int64
    public var stepsCompleted: Int
    public var stepsTotal: Int
    public var executionMs: Int64
    public var success: Bool
    public var agentsRecovered: Int
    public var agentsTotal: Int
    /// Why it stopped early or failed, when it did.
    public var stoppedBecause: String?

    public init(
        playbook: String, startedMs: Int64, stepsCompleted: Int, stepsTotal: Int, executionMs: Int64, success: Bool, agentsRecovered: Int,
        agentsTotal: Int, stoppedBecause: String?
    ) {
        self.playbook = playbook
        self.startedMs = startedMs
        self.stepsCompleted = stepsCompleted
        self.stepsTotal = stepsTotal
        self.executionMs = executionMs
        self.success = success
        self.agentsRecovered = agentsRecovered
        self.agentsTotal = agentsTotal
        self.stoppedBecause = stoppedBecause
    }

    /// `emergency_recovery: 10/10 steps in 1.4 s, success, 3/3 agents recovered`.
    public var summary: String {
        let seconds = Double(executionMs) / 1000
        let time = seconds < 10 ? String(Int((seconds * 10).rounded())).withDecimal : String(Int(seconds.rounded()))
        return "\(playbook): \(stepsCompleted)/\(stepsTotal) steps in \(time) s, \(success ? "success" : "failed"), "
            + "\(agentsRecovered)/\(agentsTotal) agents recovered" + (stoppedBecause.map { " (\($0))" } ?? "")
    }
}

extension String {
    /// "14" → "1.4": tenths written out without Foundation's formatting.
    fileprivate var withDecimal: String {
        let digits = count == 1 ? "0" + self : self
        return digits.dropLast() + "." + digits.suffix(1)
    }
}

/// The rules of a run, step by step: the shell carries out `current` and reports how it went;
/// the run decides whether to retry, go on or stop. Pure, so every rule is tested on a
/// manual clock.
public struct PlaybookRun: Sendable {
    public enum StepResult: Sendable, Equatable {
        case succeeded(String)
        case failed(String)
    }

    /// What a step's outcome made of the run, for the timeline.
    public enum Progress: Sendable, Equatable {
        case retrying(attempt: Int, because: String)
        case stepDone(String)
        case stepFailedContinuing(String)
        case stopped(String)
        case finished
    }

    public let playbook: Playbook
    public let startedAt: Instant
    public let startedMs: Int64
    public private(set) var index = 0
    public private(set) var attempt = 0
    public private(set) var completed = 0
    public private(set) var requiredFailed = false
    public private(set) var stoppedBecause: String?

    public init(playbook: Playbook, startedAt: Instant, startedMs: Int64) {
        self.playbook = playbook
        self.startedAt = startedAt
        self.startedMs = startedMs
    }

    public var isOver: Bool { stoppedBecause != nil || index >= playbook.steps.count }

    /// The step to carry out next, or nil when the run is over. A step whose tier may not act
    /// at `level`, or a run past its SLO, stops the run here.
    public mutating func current(at now: Instant, level: DegradationLevel) -> PlaybookStep? {
        guard !isOver else { return nil }
        if now - startedAt > playbook.slo {
            stoppedBecause = "over its SLO of \(playbook.slo.wholeNanoseconds / 1_000_000_000) s"
            return nil
        }
        let step = playbook.steps[index]
        guard step.action.mayRun(tier: step.tier, at: level) else {
            let reason = "step \(step.name) (\(step.tier.rawValue)) waits for an operator at \(level.rawValue): run `pimesh heal`"
            if step.required {
                stoppedBecause = reason
                return nil
            }
            index += 1
            return current(at: now, level: level)
        }
        return step
    }

    /// Each attempt gets the step's timeout, and no more than the run has left of its SLO.
    public func attemptDeadline(at now: Instant) -> Instant {
        let step = playbook.steps[min(index, playbook.steps.count - 1)]
        return min(now + step.timeout, startedAt + playbook.slo)
    }

    public mutating func report(_ result: StepResult) -> Progress {
        guard !isOver else { return .finished }
        let step = playbook.steps[index]
        switch result {
        case .succeeded:
            completed += 1
            index += 1
            attempt = 0
            return isOver ? .finished : .stepDone(step.name)
        case .failed(let why):
            if attempt < step.retries {
                attempt += 1
                return .retrying(attempt: attempt, because: why)
            }
            attempt = 0
            if step.required {
                requiredFailed = true
                stoppedBecause = "required step \(step.name) failed: \(why)"
                return .stopped(stoppedBecause!)
            }
            index += 1
            return isOver ? .finished : .stepFailedContinuing(step.name)
        }
    }

    /// Seed 002's record: a success when every step it ran either succeeded or may fail, it
    /// stayed inside its SLO and enough of the incident's agents are heartbeating again.
    public func record(at now: Instant, recovered: Int, of total: Int) -> PlaybookRunRecord {
        let elapsed = now - startedAt
        let enoughRecovered = total == 0 || Double(recovered) >= playbook.minRecovered * Double(total) - 1e-9
        var reason = stoppedBecause
        if reason == nil && !enoughRecovered {
            reason = "\(recovered) of \(total) agents recovered, fewer than \(Int((playbook.minRecovered * 100).rounded())) %"
        }
        return PlaybookRunRecord(
            playbook: playbook.id, startedMs: startedMs, stepsCompleted: completed, stepsTotal: playbook.steps.count,
            executionMs: elapsed.wholeNanoseconds / 1_000_000, success: stoppedBecause == nil && !requiredFailed && elapsed <= playbook.slo && enoughRecovered,
            agentsRecovered: recovered, agentsTotal: total, stoppedBecause: reason)
    }
}
