/// Seed 001 §6.2 cluster breaker, for a group of agents (pimesh groups by capability): more
/// than 5 agent failures in the group within `window` open it, and no new work goes to the
/// group for 30 s. Failures are counted by agent: one agent that fails again and again is its
/// own breaker's business, and one that flaps on purpose (anyone with the join token may
/// register an agent with any capability) kept a capability that healthy agents serve out of
/// service for as long as it liked. Then, if some agent of the group is healthy, it turns HALF_OPEN for 60 s
/// (work flows; one more failure opens it again); if none is, isolation is extended by 60 s.
/// A quiet half-open period closes it.
public struct GroupBreaker: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        /// Open when failures in the window exceed this (seed: `cluster_failures > 5`).
        public var maxFailures: Int
        public var window: Duration
        public var openFor: Duration
        public var halfOpenFor: Duration
        /// When the probe finds no healthy agent (seed: "Longer wait this time").
        public var extendBy: Duration

        public init(
            maxFailures: Int = 5, window: Duration = .seconds(60), openFor: Duration = .seconds(30),
            halfOpenFor: Duration = .seconds(60), extendBy: Duration = .seconds(60)
        ) {
            self.maxFailures = maxFailures
            self.window = window
            self.openFor = openFor
            self.halfOpenFor = halfOpenFor
            self.extendBy = extendBy
        }
    }

    public let settings: Settings
    public private(set) var state: CircuitBreaker.State = .closed
    struct Failure: Sendable, Equatable {
        var at: Instant
        var agent: String
    }

    /// The latest failure of each agent that failed within `window`.
    private var failures: [Failure] = []
    private var until: Instant?

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    public enum Transition: Sendable, Equatable {
        case opened(failures: Int)
        case extended
        case halfOpened
        case closed
    }

    public var recentFailures: Int { failures.count }

    public mutating func recordFailure(of agent: String, at now: Instant) -> Transition? {
        failures.removeAll { now - $0.at > settings.window || $0.agent == agent }
        failures.append(Failure(at: now, agent: agent))
        switch state {
        case .halfOpen:
            state = .open
            until = now + settings.openFor
            return .opened(failures: failures.count)
        case .open:
            return nil
        case .closed:
            guard failures.count > settings.maxFailures else { return nil }
            state = .open
            until = now + settings.openFor
            return .opened(failures: failures.count)
        }
    }

    /// The timer: `probeHealthy` says whether any agent of the group is healthy now.
    public mutating func tick(at now: Instant, probeHealthy: Bool) -> Transition? {
        failures.removeAll { now - $0.at > settings.window }
        guard let until, now >= until else { return nil }
        switch state {
        case .open:
            if probeHealthy {
                state = .halfOpen
                self.until = now + settings.halfOpenFor
                return .halfOpened
            }
            self.until = now + settings.extendBy
            return .extended
        case .halfOpen:
            state = .closed
            self.until = nil
            failures.removeAll()
            return .closed
        case .closed:
            return nil
        }
    }

    public var isOpen: Bool { state == .open }
}
