/// When to start a supervised agent again after it exited: exponential backoff from `initial`
/// doubling to `maximum`, reset once the agent had run for `stableAfter` (as systemd's
/// RestartSec with a burst window, and Erlang supervisors' intensity/period).
public struct RestartBackoff: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var initial: Duration
        public var maximum: Duration
        public var stableAfter: Duration

        public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(30), stableAfter: Duration = .seconds(10)) {
            self.initial = initial
            self.maximum = maximum
            self.stableAfter = stableAfter
        }
    }

    public let settings: Settings
    public private(set) var consecutiveFailures = 0

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// The agent that started at `startedAt` exited at `exitedAt`: how long to wait. The first
    /// exit after a stable run restarts at once (seed 002's "force restart, bypass cooldown");
    /// each exit after that waits `initial`, doubling up to `maximum`.
    public mutating func delayAfterExit(startedAt: Instant, exitedAt: Instant) -> Duration {
        if exitedAt - startedAt >= settings.stableAfter { consecutiveFailures = 0 }
        defer { consecutiveFailures += 1 }
        guard consecutiveFailures > 0 else { return .zero }
        var delay = settings.initial
        for _ in 0..<min(consecutiveFailures - 1, 40) {
            delay = delay * 2
            if delay >= settings.maximum { break }
        }
        return min(delay, settings.maximum)
    }

    /// An operator's heal starts the count afresh.
    public mutating func reset() {
        consecutiveFailures = 0
    }
}

/// The manifest's restart policy, as systemd's Restart= names them.
public enum RestartPolicy: String, Sendable, Equatable, CaseIterable, Codable {
    case always
    case onFailure = "on-failure"
    case never

    /// `cleanExit`: exit status 0 and no signal.
    public func restarts(cleanExit: Bool) -> Bool {
        switch self {
        case .always: true
        case .onFailure: !cleanExit
        case .never: false
        }
    }
}
