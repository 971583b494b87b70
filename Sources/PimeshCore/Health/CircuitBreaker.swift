/// Seed 000 "OrchestrationCircuitBreaker" for one agent: a sliding window counter of task
/// outcomes (10 one-second buckets); at ≥ 50 % failures over 10 s it opens and the agent gets no
/// new work. After `openFor` one trial task is let through (HALF_OPEN); its success closes the
/// breaker, its failure opens it again. Reset authority (the seed's open question 1) is
/// automatic on a successful trial: an L0 action.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var window: Duration
        public var buckets: Int
        public var failureRate: Double
        /// Fewer outcomes than this in the window say nothing.
        public var minimumCalls: Int
        public var openFor: Duration

        public init(
            window: Duration = .seconds(10), buckets: Int = 10, failureRate: Double = 0.5, minimumCalls: Int = 4,
            openFor: Duration = .seconds(30)
        ) {
            self.window = window
            self.buckets = buckets
            self.failureRate = failureRate
            self.minimumCalls = minimumCalls
            self.openFor = openFor
        }
    }

    public enum State: String, Sendable, Equatable, Codable {
        case closed = "CLOSED"
        case open = "OPEN"
        case halfOpen = "HALF_OPEN"
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    public private(set) var state: State = .closed
    private var openedAt: Instant?
    private var trialOut = false
    private var successes: [UInt16]
    private var failures: [UInt16]
    private var bucketStart: [Int64]

    /// The buckets are allocated at the first outcome: most agents never fail a task.
    public init(settings: Settings = Settings()) {
        self.sharedSettings = Shared(settings)
        successes = []
        failures = []
        bucketStart = []
    }

    private var bucketNanoseconds: Int64 {
        settings.window.wholeNanoseconds / Int64(settings.buckets)
    }

    /// Failures and total outcomes in the window ending at `now`.
    public func counts(at now: Instant) -> (failures: Int, total: Int) {
        let width = bucketNanoseconds
        let current = now.nanoseconds / width
        var failed = 0
        var total = 0
        for index in bucketStart.indices where bucketStart[index] > current - Int64(settings.buckets) {
            failed += Int(failures[index])
            total += Int(failures[index]) + Int(successes[index])
        }
        return (failed, total)
    }

    public enum Transition: Sendable, Equatable {
        case opened(failures: Int, total: Int)
        case halfOpened
        case closed
    }

    /// Records a task outcome; returns the state change it caused, if any.
    @discardableResult
    public mutating func record(success: Bool, at now: Instant) -> Transition? {
        _ = advance(at: now)
        switch state {
        case .halfOpen:
            trialOut = false
            if success {
                reset()
                state = .closed
                return .closed
            }
            open(at: now)
            return .opened(failures: 1, total: 1)
        case .open:
            // A late result of work handed out before the breaker opened.
            return nil
        case .closed:
            if bucketStart.isEmpty {
                successes = Array(repeating: 0, count: settings.buckets)
                failures = Array(repeating: 0, count: settings.buckets)
                bucketStart = Array(repeating: Int64.min, count: settings.buckets)
            }
            let width = bucketNanoseconds
            let bucket = now.nanoseconds / width
            let index = Int(bucket % Int64(settings.buckets))
            if bucketStart[index] != bucket {
                bucketStart[index] = bucket
                successes[index] = 0
                failures[index] = 0
            }
            if success { successes[index] &+= 1 } else { failures[index] &+= 1 }
            let (failed, total) = counts(at: now)
            if total >= settings.minimumCalls, Double(failed) >= settings.failureRate * Double(total) {
                open(at: now)
                return .opened(failures: failed, total: total)
            }
            return nil
        }
    }

    /// Moves OPEN to HALF_OPEN once `openFor` has passed.
    public mutating func advance(at now: Instant) -> Transition? {
        if state == .open, let openedAt, now - openedAt >= settings.openFor {
            state = .halfOpen
            trialOut = false
            return .halfOpened
        }
        return nil
    }

    /// Whether the agent may get one more task now. In HALF_OPEN only one trial is out at a time.
    public func allows(at now: Instant) -> Bool {
        switch state {
        case .closed: true
        case .open: openedAt.map { now - $0 >= settings.openFor } ?? false
        case .halfOpen: !trialOut
        }
    }

    /// The router handed the agent a task: in HALF_OPEN that is the trial.
    public mutating func dispatched(at now: Instant) {
        _ = advance(at: now)
        if state == .halfOpen { trialOut = true }
    }

    private mutating func open(at now: Instant) {
        state = .open
        openedAt = now
        trialOut = false
    }

    private mutating func reset() {
        for index in bucketStart.indices {
            successes[index] = 0
            failures[index] = 0
            bucketStart[index] = Int64.min
        }
        openedAt = nil
    }
}
