/// Seed 001 §11.1 key performance indicators over rolling windows of an hour, a day and a month,
/// each KPI headed by the window the seed measures it over ("aggregated hourly", "daily",
/// "reported monthly"). Memory is fixed: 60 one-minute, 24 one-hour and 30 one-day buckets of
/// counters, and the last `cascadeSamples` cascade durations with their times.
public struct CoordinationKPIs: Sendable {
    public enum Window: String, Sendable, CaseIterable {
        case hour, day, month

        public var bucket: Duration {
            switch self {
            case .hour: .seconds(60)
            case .day: .seconds(3600)
            case .month: .seconds(86_400)
            }
        }

        public var buckets: Int {
            switch self {
            case .hour: 60
            case .day: 24
            case .month: 30
            }
        }

        public var span: Duration { bucket * buckets }
    }

    public struct Settings: Sendable, Equatable {
        /// Seed: "within 50 ms for 90 % of messages".
        public var predictionTolerance: Duration
        public var cascadeSamples: Int
        /// Seed mesh_availability: "≥ 95 % of agents are active".
        public var activeShare: Double
        /// A gap between health ticks longer than this (the lead was stopped or the machine
        /// suspended) is time nobody watched: it counts neither for nor against availability.
        public var longestWatchedGap: Duration

        public init(
            predictionTolerance: Duration = .milliseconds(50), cascadeSamples: Int = 1000, activeShare: Double = 0.95,
            longestWatchedGap: Duration = .seconds(10)
        ) {
            self.predictionTolerance = predictionTolerance
            self.cascadeSamples = cascadeSamples
            self.activeShare = activeShare
            self.longestWatchedGap = longestWatchedGap
        }
    }

    /// What one bucket counts; windows add buckets up.
    public struct Counts: Sendable, Equatable {
        public var operations = 0
        public var operationsAchievingQuorum = 0
        public var arrivals = 0
        public var arrivalsInWindow = 0
        public var predictions = 0
        public var predictionsWithinTolerance = 0
        public var responses = 0
        public var conflictResponses = 0
        public var watchedMs: Int64 = 0
        public var availableMs: Int64 = 0
        public var recoveries = 0
        public var longestRecoveryMs: Int64 = 0

        public init() {}

        static func + (lhs: Counts, rhs: Counts) -> Counts {
            var sum = lhs
            sum.operations += rhs.operations
            sum.operationsAchievingQuorum += rhs.operationsAchievingQuorum
            sum.arrivals += rhs.arrivals
            sum.arrivalsInWindow += rhs.arrivalsInWindow
            sum.predictions += rhs.predictions
            sum.predictionsWithinTolerance += rhs.predictionsWithinTolerance
            sum.responses += rhs.responses
            sum.conflictResponses += rhs.conflictResponses
            sum.watchedMs += rhs.watchedMs
            sum.availableMs += rhs.availableMs
            sum.recoveries += rhs.recoveries
            sum.longestRecoveryMs = max(sum.longestRecoveryMs, rhs.longestRecoveryMs)
            return sum
        }
    }

    /// One window's buckets, a ring indexed by bucket number since the clock's origin.
    struct Rolling: Sendable {
        let window: Window
        private var numbers: [Int64]
        private var counts: [Counts]

        init(_ window: Window) {
            self.window = window
            numbers = Array(repeating: .min, count: window.buckets)
            counts = Array(repeating: Counts(), count: window.buckets)
        }

        private func number(at now: Instant) -> Int64 {
            now.bucket(of: window.bucket)
        }

        mutating func add(at now: Instant, _ change: (inout Counts) -> Void) {
            let current = number(at: now)
            let slot = Int(((current % Int64(window.buckets)) + Int64(window.buckets)) % Int64(window.buckets))
            if numbers[slot] != current {
                numbers[slot] = current
                counts[slot] = Counts()
            }
            change(&counts[slot])
        }

        func total(at now: Instant) -> Counts {
            let current = number(at: now)
            var sum = Counts()
            for (slot, number) in numbers.enumerated() where number <= current && number > current - Int64(window.buckets) {
                sum = sum + counts[slot]
            }
            return sum
        }
    }

    public let settings: Settings
    private var windows: [Rolling] = Window.allCases.map(Rolling.init)
    private var cascades: [(at: Instant, ms: Double)] = []
    private var cascadeNext = 0
    private var lastWatch: (at: Instant, available: Bool)?
    /// When the mesh fell below the active share, while it is still below.
    public private(set) var outageSince: Instant?

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    private mutating func count(at now: Instant, _ change: (inout Counts) -> Void) {
        for index in windows.indices { windows[index].add(at: now, change) }
    }

    /// One answer (a task result or a scatter-gather answer): did it come when and as predicted?
    /// `inWindow` comes from `ScatterGather.Plan.isInArrivalWindow` or `taskArrivedInWindow`.
    public mutating func recordArrival(actualMs: Double, predictedMs: Double, inWindow: Bool, state: TrinaryState, at now: Instant) {
        let withinTolerance = abs(actualMs - predictedMs) <= settings.predictionTolerance.milliseconds
        count(at: now) { counts in
            counts.arrivals += 1
            if inWindow { counts.arrivalsInWindow += 1 }
            counts.predictions += 1
            if withinTolerance { counts.predictionsWithinTolerance += 1 }
            counts.responses += 1
            if state == .conflict { counts.conflictResponses += 1 }
        }
    }

    /// Agents that were sent a scatter-gather message and never answered in its window.
    public mutating func recordMissedArrivals(_ missed: Int, at now: Instant) {
        guard missed > 0 else { return }
        count(at: now) { $0.arrivals += missed }
    }

    /// One scatter-gather operation from its first send to its decision.
    public mutating func recordOperation(achievedQuorum: Bool, durationMs: Double, at now: Instant) {
        count(at: now) { counts in
            counts.operations += 1
            if achievedQuorum { counts.operationsAchievingQuorum += 1 }
        }
        let capacity = max(1, settings.cascadeSamples)
        if cascades.count < capacity {
            cascades.append((now, durationMs))
        } else {
            cascades[cascadeNext] = (now, durationMs)
        }
        cascadeNext = (cascadeNext + 1) % capacity
    }

    /// A health tick: the share of counted agents that are active (healthy), or nil with no
    /// agent to count. The time since the previous tick is judged by the previous tick's share;
    /// a fall below the active share starts an outage, the first tick back ends it, and its
    /// length is a recovery ("failure detection to mesh restored").
    public mutating func recordActiveShare(_ share: Double?, at now: Instant) {
        let available = share.map { $0 >= settings.activeShare }
        if let last = lastWatch, now > last.at, now - last.at <= settings.longestWatchedGap {
            let elapsedMs = Int64((now - last.at).milliseconds.rounded())
            count(at: now) { counts in
                counts.watchedMs += elapsedMs
                if last.available { counts.availableMs += elapsedMs }
            }
        }
        lastWatch = available.map { (now, $0) }
        switch (available, outageSince) {
        case (nil, _):
            // No agent left to count: nothing is down, and nothing will come back to end it.
            outageSince = nil
        case (false, nil):
            outageSince = now
        case (true, let since?):
            let ms = Int64((now - since).milliseconds.rounded())
            count(at: now) { counts in
                counts.recoveries += 1
                counts.longestRecoveryMs = max(counts.longestRecoveryMs, ms)
            }
            outageSince = nil
        default:
            break
        }
    }

    public struct Measurement: Sendable, Equatable {
        public var window: Window
        /// nil until something was measured in the window.
        public var value: Double?
        public var samples: Int
    }

    public struct Indicator: Sendable, Equatable {
        public enum Bound: String, Sendable { case atLeast = ">=", atMost = "<=" }

        public var name: String
        /// The value over `window`, the window the seed measures this KPI over.
        public var value: Double?
        public var target: Double
        public var bound: Bound
        public var unit: String
        public var samples: Int
        public var window: Window
        /// Hour, day and month.
        public var windows: [Measurement]

        public var met: Bool? {
            value.map { bound == .atLeast ? $0 >= target : $0 <= target }
        }

        /// Whether missing the target is an early-warning incident of its own. mesh_availability
        /// and recovery_time miss because of an outage that already is an incident (agents
        /// unhealthy, degradation); a second one, open as long as the miss stays in the month,
        /// would be noise.
        public var warnsOnMiss: Bool { name != "mesh_availability" && name != "recovery_time" }
    }

    private static func ratio(_ part: Int, _ whole: Int) -> Double? {
        whole == 0 ? nil : Double(part) / Double(whole)
    }

    private static func ratio(_ part: Int64, _ whole: Int64) -> Double? {
        whole == 0 ? nil : Double(part) / Double(whole)
    }

    /// Seed recovery_time: "≤ 5 minutes for cluster". The node's mesh is the cluster here; the
    /// sector's 15 minutes is the coordinator's to measure.
    public static let recoveryTargetMs = 300_000.0

    /// The seed's targets beside the values, over each window at `now`.
    @_optimize(size)  // cold: status calls and incident observations (the 25 MB budget)
    public func indicators(at now: Instant) -> [Indicator] {
        let totals = Dictionary(uniqueKeysWithValues: windows.map { ($0.window, $0.total(at: now)) })
        let ongoingMs = outageSince.map { (now - $0).milliseconds }
        func indicator(
            _ name: String, target: Double, _ bound: Indicator.Bound, unit: String, window: Window,
            _ measure: (Window, Counts) -> (Double?, Int)
        ) -> Indicator {
            let measured = Window.allCases.map { window in
                let (value, samples) = measure(window, totals[window] ?? Counts())
                return Measurement(window: window, value: value, samples: samples)
            }
            let headline = measured.first { $0.window == window }!
            return Indicator(
                name: name, value: headline.value, target: target, bound: bound, unit: unit, samples: headline.samples, window: window,
                windows: measured)
        }
        return [
            indicator("coordination_success_rate", target: 0.99, .atLeast, unit: "ratio", window: .hour) {
                (Self.ratio($1.operationsAchievingQuorum, $1.operations), $1.operations)
            },
            indicator("arrival_window_hit_rate", target: 0.95, .atLeast, unit: "ratio", window: .hour) {
                (Self.ratio($1.arrivalsInWindow, $1.arrivals), $1.arrivals)
            },
            indicator("impedance_prediction_accuracy", target: 0.90, .atLeast, unit: "ratio", window: .day) {
                (Self.ratio($1.predictionsWithinTolerance, $1.predictions), $1.predictions)
            },
            indicator("conflict_rate", target: 0.01, .atMost, unit: "ratio", window: .day) {
                (Self.ratio($1.conflictResponses, $1.responses), $1.responses)
            },
            indicator("mesh_availability", target: 0.999, .atLeast, unit: "ratio", window: .month) {
                (Self.ratio($1.availableMs, $1.watchedMs), Int($1.watchedMs / 1000))
            },
            indicator("cascade_latency_p95", target: 1000, .atMost, unit: "ms", window: .hour) { window, _ in
                let since = now - window.span
                let inWindow = cascades.filter { $0.at > since && $0.at <= now }.map(\.ms)
                return (Self.seedP95(inWindow), inWindow.count)
            },
            indicator("recovery_time", target: Self.recoveryTargetMs, .atMost, unit: "ms", window: .day) { _, counts in
                // An outage still going on counts with its length so far: a KPI that only
                // judged finished recoveries would call a mesh that never came back "met".
                let finished = counts.recoveries > 0 ? Double(counts.longestRecoveryMs) : nil
                let worst = [finished, ongoingMs].compactMap { $0 }.max()
                return (worst, counts.recoveries + (ongoingMs == nil ? 0 : 1))
            },
        ]
    }

    /// Seed 001's 95th percentile, `statistics.quantiles(values, n=20)[18]`: Python's default
    /// "exclusive" method, interpolating between the two ranks around 19 (m + 1) / 20.
    public static func seedP95(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        guard sorted.count > 1 else { return sorted[0] }
        let n = 20
        let i = 19
        let m = sorted.count + 1
        let j = min(max(i * m / n, 1), sorted.count - 1)
        let delta = i * m - j * n
        return (sorted[j - 1] * Double(n - delta) + sorted[j] * Double(delta)) / Double(n)
    }

    /// Tasks have no common target: a result is in its window when it comes no later than the
    /// lead time the router predicted plus the prediction tolerance.
    public func taskArrivedInWindow(actualMs: Double, leadTimeMs: Double) -> Bool {
        actualMs <= leadTimeMs + settings.predictionTolerance.milliseconds
    }
}

extension ScatterGather.Plan {
    /// Seed §3.2's arrival window is the `arrival_window_ms` after the target; an answer a
    /// little early (by the prediction tolerance, what a 10 ms send bucket rounds away) is in
    /// it too. An answer long before the target arrived, but not when it was scheduled to.
    public func isInArrivalWindow(_ arrival: Instant, tolerance: Duration) -> Bool {
        arrival >= targetArrival - tolerance && arrival <= arrivalDeadline
    }
}
