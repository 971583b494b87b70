/// Seed 000 ModelLivenessProbe for agents that expose an HTTP endpoint: active polling with a
/// timeout; "latency > 5000 ms OR HTTP 503" is not live. Any other answer in time is live: the
/// probe asks whether the agent is alive, not whether its last request went well.
public struct LivenessProbe: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var every: Duration
        public var timeout: Duration
        /// Consecutive not-live answers before the agent is judged hung.
        public var failures: Int
        /// After a (re)start, failures count only once the endpoint answered live, or after
        /// this long: a process heartbeats before its HTTP server listens (a model loading),
        /// and judging it then would restart it forever.
        public var startGrace: Duration

        public init(every: Duration = .seconds(10), timeout: Duration = .milliseconds(5000), failures: Int = 1, startGrace: Duration = .seconds(30)) {
            self.every = every
            self.timeout = timeout
            self.failures = max(1, failures)
            self.startGrace = startGrace
        }
    }

    public enum Verdict: Sendable, Equatable {
        case live
        case notLive(String)
    }

    public let settings: Settings
    /// When the process it probes started (or the lead first saw it).
    public let processSince: Instant
    public private(set) var lastStarted: Instant?
    public private(set) var inFlight = false
    public private(set) var consecutiveFailures = 0
    public private(set) var answeredLive = false

    public init(settings: Settings = Settings(), processSince: Instant) {
        self.settings = settings
        self.processSince = processSince
    }

    /// One answer: `status` nil when there was none (refused, reset, timed out).
    public static func judge(status: Int?, latency: Duration, error: String?, timeout: Duration) -> Verdict {
        guard let status else { return .notLive("no answer: \(error ?? "connection closed")") }
        if latency > timeout {
            return .notLive("answered after \(Int64(latency.milliseconds.rounded())) ms, over \(Int64(timeout.milliseconds)) ms")
        }
        if status == 503 { return .notLive("HTTP 503") }
        return .live
    }

    /// Whether a probe starts now; one at a time, `every` apart from start to start.
    public mutating func start(at now: Instant) -> Bool {
        guard !inFlight, lastStarted.map({ now - $0 >= settings.every }) ?? true else { return false }
        inFlight = true
        lastStarted = now
        return true
    }

    /// The verdict the agent's health takes: not live only after `failures` in a row.
    public mutating func finish(_ verdict: Verdict, at now: Instant) -> Verdict {
        inFlight = false
        switch verdict {
        case .live:
            consecutiveFailures = 0
            answeredLive = true
            return .live
        case .notLive:
            guard answeredLive || now - processSince >= settings.startGrace else { return .live }
            consecutiveFailures += 1
            return consecutiveFailures >= settings.failures ? verdict : .live
        }
    }
}
