/// Seed 000's token-stream watchdog, for agents in general: heartbeats carry a progress counter,
/// and the lead learns how often it moves (EWMA) while the agent has work. An agent that holds
/// work and whose counter stops for longer than mean + 3σ is HANG; one whose counter keeps
/// moving but which completes nothing for longer than its usual gap between completions is LOOP.
public struct ProgressWatchdog: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var sigmas: Double
        public var smoothing: Double
        /// No HANG before this much stagnation, however regular the agent was: tasks may think.
        public var minimumStagnationMs: Double
        /// No LOOP before this long without a completion while progress moves.
        public var minimumLoopMs: Double

        public init(sigmas: Double = 3, smoothing: Double = 0.2, minimumStagnationMs: Double = 2000, minimumLoopMs: Double = 10_000) {
            self.sigmas = sigmas
            self.smoothing = smoothing
            self.minimumStagnationMs = minimumStagnationMs
            self.minimumLoopMs = minimumLoopMs
        }
    }

    public enum Verdict: Sendable, Equatable {
        case ok
        /// No progress for `stagnationMs`, more than the `thresholdMs` this agent has earned.
        case hang(stagnationMs: Double, thresholdMs: Double)
        /// Progress but no completion for `stagnationMs`.
        case loop(stagnationMs: Double, thresholdMs: Double)
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    private var progress: UInt64?
    private var lastProgressChange: Instant?
    private var lastCompletion: Instant?
    private var busySince: Instant?
    private var progressGap = Ewma()
    private var completionGap = Ewma()

    public init(settings: Settings = Settings()) {
        self.sharedSettings = Shared(settings)
    }

    struct Ewma: Sendable, Equatable {
        var mean = 0.0
        var variance = 0.0
        var samples = 0

        mutating func add(_ value: Double, smoothing: Double) {
            if samples == 0 {
                mean = value
            } else {
                let delta = value - mean
                mean += smoothing * delta
                variance = (1 - smoothing) * (variance + smoothing * delta * delta)
            }
            samples += 1
        }

        func threshold(sigmas: Double, floor: Double) -> Double {
            guard samples > 0 else { return floor }
            return max(floor, mean + sigmas * variance.squareRoot())
        }
    }

    /// Each heartbeat's progress counter. `busy` says whether the lead has work out with the agent.
    public mutating func observe(progress value: UInt64, busy: Bool, at now: Instant) {
        noteBusy(busy, at: now)
        if let previous = progress, value != previous {
            if busy, let last = lastProgressChange {
                progressGap.add((now - max(last, busySince ?? last)).milliseconds, smoothing: settings.smoothing)
            }
            lastProgressChange = now
        } else if progress == nil {
            lastProgressChange = now
        }
        progress = value
    }

    /// An answer that is not a completion to learn from (the lead could not store it): the loop
    /// clock starts again, but the gap is no sample, or a spell of such answers every few
    /// seconds would teach the watchdog a short gap and judge slow tasks LOOP after it.
    public mutating func answered(at now: Instant) {
        lastCompletion = now
    }

    public mutating func completed(at now: Instant) {
        if let last = lastCompletion, let busySince {
            completionGap.add((now - max(last, busySince)).milliseconds, smoothing: settings.smoothing)
        }
        lastCompletion = now
    }

    public func verdict(busy: Bool, at now: Instant) -> Verdict {
        guard busy, let busySince, let lastProgressChange else { return .ok }
        let stagnation = (now - max(lastProgressChange, busySince)).milliseconds
        let hangThreshold = progressGap.threshold(sigmas: settings.sigmas, floor: settings.minimumStagnationMs)
        if stagnation > hangThreshold { return .hang(stagnationMs: stagnation, thresholdMs: hangThreshold) }
        let sinceCompletion = (now - max(lastCompletion ?? busySince, busySince)).milliseconds
        let loopThreshold = completionGap.threshold(sigmas: settings.sigmas, floor: settings.minimumLoopMs)
        if sinceCompletion > loopThreshold, lastProgressChange > max(lastCompletion ?? busySince, busySince) {
            return .loop(stagnationMs: sinceCompletion, thresholdMs: loopThreshold)
        }
        return .ok
    }

    /// How long the counter has stood still (nil before the first heartbeat).
    public func stillFor(at now: Instant) -> Duration? {
        lastProgressChange.map { now - $0 }
    }

    /// Starts the clocks afresh when work arrives after an idle spell: idle time is not a hang.
    public mutating func noteBusy(_ busy: Bool, at now: Instant) {
        if busy, busySince == nil { busySince = now }
        if !busy { busySince = nil }
    }
}
