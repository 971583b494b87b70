/// One agent's health as the lead sees it: phi accrual over its heartbeats, the progress
/// watchdog, its circuit breaker and, after a restart, its canary ramp. Heartbeats and
/// completions update it in place (no allocation, nothing reported); `evaluate` runs on the
/// lead's health tick and returns the change of condition since the last tick, if any.
public struct AgentHealth: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var phi: PhiAccrualDetector.Settings
        public var watchdog: ProgressWatchdog.Settings
        public var breaker: CircuitBreaker.Settings
        public var canary: CanaryRamp.Settings
        /// A (re)started agent that has not heartbeat after this long while its process runs is hung.
        public var startGrace: Duration
        /// After the lead starts (or the agent registers), how long an agent not heard yet is
        /// pending rather than judged: three heartbeat intervals plus the stale limit, so a lead
        /// restart is not an outage.
        public var pendingGrace: Duration
        /// An agent no manifest expects that stays silent this long has departed.
        public var expireAfter: Duration

        public init(
            phi: PhiAccrualDetector.Settings = .init(), watchdog: ProgressWatchdog.Settings = .init(),
            breaker: CircuitBreaker.Settings = .init(), canary: CanaryRamp.Settings = .init(), startGrace: Duration = .seconds(5),
            pendingGrace: Duration = .milliseconds(4000), expireAfter: Duration = .seconds(300)
        ) {
            self.phi = phi
            self.watchdog = watchdog
            self.breaker = breaker
            self.canary = canary
            self.startGrace = startGrace
            self.pendingGrace = pendingGrace
            self.expireAfter = expireAfter
        }

        /// The pending grace for a heartbeat interval and stale limit.
        public static func pendingGrace(heartbeatInterval: Duration, staleAfter: Duration) -> Duration {
            heartbeatInterval * 3 + staleAfter
        }
    }

    /// What the shell knows about the agent's process.
    public enum ProcessLiveness: Sendable, Equatable {
        /// Attached agents: the lead has no pid.
        case unknown
        case running
        case gone
    }

    public struct Change: Sendable, Equatable {
        public var from: AgentCondition
        public var to: AgentCondition
        /// When the new condition began (the heartbeat that ended a silence, the exit, the tick).
        public var since: Instant
        public var reason: String
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    public private(set) var condition: AgentCondition = .unknown
    public private(set) var since: Instant?
    public private(set) var reason = "registered"
    public var phi: PhiAccrualDetector
    public private(set) var watchdog: ProgressWatchdog
    public private(set) var breaker: CircuitBreaker
    public private(set) var canary: CanaryRamp?
    private var reported: AgentCondition = .unknown
    /// A failure the agent left before a health tick reported it (an exit followed by an
    /// immediate restart and a heartbeat): still reported, so that the exit reaches the event
    /// log, the audit log, the group breaker and the incident engine.
    private var unreportedFailure: Change?
    private var startedAt: Instant?
    private var busy = false
    private var lastProgress: UInt64 = 0
    /// The progress counter when the watchdog judged HANG or LOOP: the condition holds until the
    /// agent shows it moved on (a new progress value for HANG; for LOOP a completion, or its
    /// counter standing still once it holds no work), even if its work is taken away meanwhile.
    private var stuckAt: UInt64?
    /// The first health tick that saw it (after the lead started or it registered).
    private var watchedSince: Instant?
    /// Why its liveness probe says it is not live, while it says so: hung, whatever its
    /// heartbeats say (a process can heartbeat from one thread while it serves nothing).
    public private(set) var probeFailure: String?
    /// Seed 000 FlowControlGate (`max_concurrency` in its manifest): with this many tasks out
    /// it is held from new work; "pending > max_concurrency → hold" with the task that would
    /// make it pending counted.
    public var maxConcurrency: Int?

    public init(settings: Settings = Settings()) {
        self.sharedSettings = Shared(settings)
        phi = PhiAccrualDetector(settings: settings.phi)
        watchdog = ProgressWatchdog(settings: settings.watchdog)
        breaker = CircuitBreaker(settings: settings.breaker)
    }

    public mutating func heartbeat(at now: Instant, progress: UInt64) {
        // A stopped agent's last datagrams, sent while it shut down, do not bring it back.
        guard condition != .frozen && condition != .stopped else { return }
        // The silence that ended here was already judged a failure: learning it as an interval
        // would make the detector seconds slower for this agent's next failure.
        if condition == .suspected || condition == .left || condition == .departed || (condition == .hung && stuckAt == nil) {
            phi.pause()
        }
        // Datagrams still queued when it said goodbye do not bring it back.
        if condition == .left, let since, now - since < settings.pendingGrace { return }
        phi.heartbeat(at: now)
        watchdog.observe(progress: progress, busy: busy, at: now)
        lastProgress = progress
        switch condition {
        case .unknown, .suspected, .exited, .left, .departed:
            set(.alive, at: now, reason: condition == .left || condition == .departed ? "back" : "heartbeating")
        case .hung:
            if let stuckAt {
                if progress != stuckAt { set(.alive, at: now, reason: "progressing again") }
            } else if probeFailure == nil {
                set(.alive, at: now, reason: "heartbeating again")
            }
        case .looping, .alive, .frozen, .stopped:
            break
        }
    }

    public mutating func completed(success: Bool, at now: Instant) -> CircuitBreaker.Transition? {
        watchdog.completed(at: now)
        if condition == .looping { set(.alive, at: now, reason: "completed a task") }
        return breaker.record(success: success, at: now)
    }

    /// The agent delivered an answer the lead could not keep (a full disk refused its commit):
    /// proof enough that it is not looping, and no verdict on its work for the breaker.
    public mutating func answered(at now: Instant) {
        watchdog.answered(at: now)
        if condition == .looping { set(.alive, at: now, reason: "answered (its result waits for room in the store)") }
    }

    /// The health tick. `busy`: the lead has work out with the agent. `expected`: a manifest
    /// names it, so its silence stays a failure and it never departs.
    public mutating func evaluate(at now: Instant, busy: Bool, process: ProcessLiveness, expected: Bool = false) -> Change? {
        self.busy = busy
        if watchedSince == nil { watchedSince = now }
        watchdog.noteBusy(busy, at: now)
        // Silent since its last heartbeat, or since it became unknown (a thaw, a start), or since
        // this lead first saw it, whichever is latest.
        if !expected, condition == .unknown || condition == .suspected,
            let silentSince = [phi.lastHeartbeat, since, watchedSince].compactMap({ $0 }).max(), now - silentSince >= settings.expireAfter
        {
            set(.departed, at: now, reason: "silent for \(Self.ms(now - silentSince) / 1000) s and no manifest expects it")
        }
        switch condition {
        case .frozen, .exited, .left, .departed, .stopped:
            break
        case .unknown:
            if process == .running, let startedAt, now - startedAt > settings.startGrace {
                set(.hung, at: now, reason: "started \(Self.ms(now - startedAt)) ms ago and has not heartbeat; its process is alive")
            }
        case .alive, .suspected, .hung, .looping:
            if phi.isSuspected(at: now) {
                let silence = phi.lastHeartbeat.map { Self.ms(now - $0) } ?? 0
                let phiNow = (phi.phi(at: now) * 10).rounded() / 10
                if process == .running {
                    if condition != .hung {
                        stuckAt = nil
                        set(.hung, at: now, reason: "no heartbeat for \(silence) ms (phi \(phiNow)) but the process is alive")
                    }
                } else if condition != .suspected && condition != .hung {
                    set(.suspected, at: now, reason: "no heartbeat for \(silence) ms (phi \(phiNow))")
                }
            } else {
                switch watchdog.verdict(busy: busy, at: now) {
                case .hang(let stagnation, let threshold):
                    if condition != .hung {
                        stuckAt = lastProgress
                        set(.hung, at: now, reason: "holds work but made no progress for \(Int64(saturating: stagnation)) ms (threshold \(Int64(saturating: threshold)) ms)")
                    }
                case .loop(let stagnation, let threshold):
                    if condition != .looping {
                        stuckAt = lastProgress
                        set(.looping, at: now, reason: "progress without a completion for \(Int64(saturating: stagnation)) ms (threshold \(Int64(saturating: threshold)) ms)")
                    }
                case .ok:
                    // HANG and LOOP end by the agent's own doing (heartbeat, completion), not
                    // because its work was taken away. But a LOOP whose work is gone cannot
                    // complete anything (a looping agent is routed none): its counter standing
                    // still is the sign its loop ended, or an agent no supervisor restarts would
                    // stay out for good, even after its owner restarted it.
                    if condition == .looping, !busy, let still = watchdog.stillFor(at: now),
                        still.milliseconds >= watchdog.settings.minimumStagnationMs
                    {
                        set(.alive, at: now, reason: "holds no work and its progress stopped \(Self.ms(still)) ms ago")
                    }
                }
            }
        }
        _ = breaker.advance(at: now)
        guard reported != condition, let since else { return nil }
        defer { reported = condition }
        return Change(from: reported, to: condition, since: since, reason: reason)
    }

    /// The failure that was over before a tick could report it, once.
    public mutating func takeUnreportedFailure() -> Change? {
        defer { unreportedFailure = nil }
        return unreportedFailure
    }

    /// The canary step of the health tick; returns the new stage when it moved.
    public mutating func evaluateCanary(at now: Instant, utilisation: Double, queueLatencyMs: Double, mayAdvance: Bool) -> Int? {
        guard var ramp = canary, condition == .alive else { return nil }
        defer { canary = ramp.isComplete ? nil : ramp }
        return ramp.evaluate(at: now, utilisation: utilisation, queueLatencyMs: queueLatencyMs, mayAdvance: mayAdvance)
    }

    /// Seed 000 ModelLivenessProbe's verdict (after its consecutive-failure count).
    public mutating func livenessProbe(_ verdict: LivenessProbe.Verdict, at now: Instant) {
        switch verdict {
        case .live:
            guard probeFailure != nil else { return }
            probeFailure = nil
            if condition == .hung && stuckAt == nil && phi.lastHeartbeat != nil && !phi.isSuspected(at: now) {
                set(.alive, at: now, reason: "its liveness probe answers again")
            }
        case .notLive(let reason):
            probeFailure = reason
            if condition == .alive {
                stuckAt = nil
                set(.hung, at: now, reason: "liveness probe: \(reason)")
            }
        }
    }

    /// The process exited (seen through the child's exit status, at once). `requested`: the
    /// lead killed it to start it again (a heal, `agent restart`, a changed manifest).
    /// `clean`: it exited with status 0. Seed 000 fails an agent on a non-zero exit or missed
    /// heartbeats; one that finished its work and ended is gone like one that said goodbye
    /// (its tasks go elsewhere), not failed (no group breaker, no incident).
    public mutating func exited(at now: Instant, reason: String, requested: Bool = false, clean: Bool = false) {
        phi.pause()
        startedAt = nil
        // The exit a stop asked for is the stop, not a failure.
        guard condition != .stopped else { return }
        guard !requested else { return set(.unknown, at: now, reason: "restarting as asked (\(reason))") }
        set(clean ? .left : .exited, at: now, reason: clean ? "\(reason): it ended, not a failure" : reason)
    }

    /// The supervisor started (or restarted) the process. A restart begins a canary ramp.
    public mutating func started(at now: Instant, restart: Bool) {
        phi.pause()
        startedAt = now
        probeFailure = nil
        if restart { canary = CanaryRamp(startedAt: now, settings: settings.canary) }
        if condition == .exited || condition == .hung || condition == .looping || condition == .stopped || condition == .left {
            set(.unknown, at: now, reason: "started")
        }
    }

    /// Stopped on purpose: its exit, when it comes, is not a failure.
    public mutating func stop(at now: Instant, reason: String) {
        phi.pause()
        startedAt = nil
        set(.stopped, at: now, reason: reason)
    }

    /// The agent said goodbye.
    public mutating func leave(at now: Instant) {
        phi.pause()
        set(.left, at: now, reason: "said goodbye")
    }

    /// Not judged yet: not heard since the lead started (or it registered) and within the
    /// pending grace; past it, still pending while no manifest expects it. A registration
    /// that never heartbeats, or an agent that stopped while no lead ran (a swarm stopped during
    /// a restart), is not a failure: it departs when it expires. Only an expected agent's
    /// silence counts after the grace.
    public func isPending(at now: Instant, expected: Bool) -> Bool {
        guard condition == .unknown else { return false }
        guard let watchedSince, now - watchedSince >= settings.pendingGrace else { return true }
        return !expected
    }

    /// How the health tick and the incident triggers count the agent at `now`, in one call:
    /// each call across the module boundary copied the whole state (417 bytes) first, and
    /// this is asked of every agent every tick (perf, issue 14).
    public func judgement(at now: Instant, expected: Bool, reporting: TrinaryState) -> Judgement {
        let pending = isPending(at: now, expected: expected)
        return Judgement(
            condition: condition, pending: pending, counted: Self.counts(condition, pending: pending),
            healthy: AgentCondition.isHealthy(condition, reporting: reporting))
    }

    public struct Judgement: Sendable, Equatable {
        public var condition: AgentCondition
        /// Registered and not yet judged: counted nowhere.
        public var pending: Bool
        /// Counts in the healthy ratio.
        public var counted: Bool
        public var healthy: Bool
    }

    /// Whether it counts in the healthy ratio that sets the degradation level: not when frozen
    /// by an operator, stopped, gone on purpose or by expiry, or pending.
    public func countsForHealth(at now: Instant, expected: Bool) -> Bool {
        Self.counts(condition, pending: isPending(at: now, expected: expected))
    }

    private static func counts(_ condition: AgentCondition, pending: Bool) -> Bool {
        if condition.isOutOnPurpose { return false }
        return condition != .unknown || !pending
    }

    public mutating func freeze(at now: Instant) {
        phi.pause()
        set(.frozen, at: now, reason: "frozen by an operator")
    }

    public mutating func thaw(at now: Instant) {
        guard condition == .frozen else { return }
        // Heartbeats resume within an interval; until then the agent is not suspected.
        phi.pause()
        set(.unknown, at: now, reason: "thawed")
    }

    /// How many tasks the agent may hold now: the canary limit, 1 for a half-open breaker trial,
    /// 0 when it may take none; nil is no limit.
    public func taskLimit(at now: Instant) -> Int? {
        guard condition == .alive else { return 0 }
        guard breaker.allows(at: now) else { return 0 }
        if breaker.state == .halfOpen || (breaker.state == .open) { return 1 }
        return [canary?.limit, maxConcurrency].compactMap { $0 }.min()
    }

    public mutating func dispatched(at now: Instant) {
        breaker.dispatched(at: now)
    }

    private mutating func set(_ condition: AgentCondition, at now: Instant, reason: String) {
        if self.condition.isFailure, self.condition != condition, reported != self.condition, let since {
            unreportedFailure = Change(from: reported, to: self.condition, since: since, reason: self.reason)
            reported = self.condition
        }
        if condition != .hung && condition != .looping { stuckAt = nil }
        self.condition = condition
        since = now
        self.reason = reason
    }

    private static func ms(_ duration: Duration) -> Int {
        Int(duration.milliseconds.rounded())
    }
}
