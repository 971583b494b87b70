/// Success rate over a sliding window (seed 001 §4.1 `success_rate_last_hour`), kept as
/// fixed time buckets so memory is constant however many outcomes an agent reports. The buckets
/// are allocated at the first outcome: an agent that never finishes a task costs nothing here.
public struct ReliabilityWindow: Sendable {
    public struct Settings: Sendable, Equatable {
        public var bucket: Duration
        public var bucketCount: Int

        /// 60 buckets of one minute: the seed's "last hour", to the minute.
        public init(bucket: Duration = .seconds(60), bucketCount: Int = 60) {
            precondition(bucket > .zero && bucketCount > 0)
            self.bucket = bucket
            self.bucketCount = bucketCount
        }
    }

    private let sharedSettings: Shared<Settings>
    public var settings: Settings { sharedSettings.value }
    private var bucketIndex: [Int64]
    private var successes: [Int]
    private var failures: [Int]

    public init(settings: Settings = Settings()) {
        self.sharedSettings = Shared(settings)
        bucketIndex = []
        successes = []
        failures = []
    }

    private func index(of instant: Instant) -> Int64 {
        let width = settings.bucket.wholeNanoseconds
        let n = instant.nanoseconds
        return n >= 0 ? n / width : (n - width + 1) / width
    }

    public mutating func record(succeeded: Bool, at now: Instant) {
        if bucketIndex.isEmpty {
            bucketIndex = Array(repeating: .min, count: settings.bucketCount)
            successes = Array(repeating: 0, count: settings.bucketCount)
            failures = Array(repeating: 0, count: settings.bucketCount)
        }
        let index = index(of: now)
        let slot = Int(((index % Int64(settings.bucketCount)) + Int64(settings.bucketCount)) % Int64(settings.bucketCount))
        if bucketIndex[slot] != index {
            bucketIndex[slot] = index
            successes[slot] = 0
            failures[slot] = 0
        }
        if succeeded { successes[slot] += 1 } else { failures[slot] += 1 }
    }

    /// Outcomes (successes, failures) inside the window that ends at `now`.
    public func outcomes(at now: Instant) -> (successes: Int, failures: Int) {
        let current = index(of: now)
        let oldest = current - Int64(settings.bucketCount) + 1
        var s = 0
        var f = 0
        for slot in bucketIndex.indices where bucketIndex[slot] >= oldest && bucketIndex[slot] <= current {
            s += successes[slot]
            f += failures[slot]
        }
        return (s, f)
    }

    /// The success rate, or nil when the window holds no outcome at all.
    public func rate(at now: Instant) -> Double? {
        let (s, f) = outcomes(at: now)
        guard s + f > 0 else { return nil }
        return Double(s) / Double(s + f)
    }
}
