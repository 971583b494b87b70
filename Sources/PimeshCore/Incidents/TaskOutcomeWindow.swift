/// Task outcomes over the windows the incident triggers read, in fixed memory: per capability,
/// ten-second buckets covering five minutes (the ratios), and a ring of the newest failures
/// (the one-hour count of seed 003's mass-failure rule). CONFLICT is not an outcome here: seed
/// 001 says a conflict is not a failure.
public struct TaskOutcomeWindow: Sendable {
    public static let bucketSpan = Duration.seconds(10)
    public static let buckets = 30
    /// Capabilities tracked by name; outcomes of any beyond are counted under `otherCapability`.
    public static let maxCapabilities = 256
    public static let otherCapability = "(other)"
    /// Enough failures to judge "≥ 5 within an hour" exactly, and to sample error texts.
    public static let failureRingSize = 256

    public struct Failure: Sendable, Equatable {
        public var at: Instant
        public var capability: String
        public var agent: String
        public var pattern: ErrorPattern
        /// The error's first `maxErrorText` bytes: a shared text is root-cause evidence.
        public var text: String
    }

    public static let maxErrorText = 120

    struct Bucket: Sendable {
        var slot: Int64 = .min
        var succeeded = 0
        var failed = 0
    }

    private var perCapability: [String: [Bucket]] = [:]
    public private(set) var failures: [Failure] = []
    private var failureNext = 0

    public init() {}

    public mutating func record(capability: String, agent: String, succeeded: Bool, error: String?, at now: Instant) {
        let slot = Self.slot(of: now)
        if perCapability[capability] == nil && perCapability.count >= Self.maxCapabilities - 1 {
            // Capabilities with nothing in the window make room (the map never passes the bound:
            // one place is kept for `otherCapability`).
            perCapability = perCapability.filter { $0.key == Self.otherCapability || $0.value.contains { $0.slot > slot - Int64(Self.buckets) } }
        }
        let name = perCapability[capability] != nil || perCapability.count < Self.maxCapabilities - 1 ? capability : Self.otherCapability
        var buckets = perCapability[name] ?? Array(repeating: Bucket(), count: Self.buckets)
        let index = Int(((slot % Int64(Self.buckets)) + Int64(Self.buckets)) % Int64(Self.buckets))
        if buckets[index].slot != slot { buckets[index] = Bucket(slot: slot) }
        if succeeded { buckets[index].succeeded += 1 } else { buckets[index].failed += 1 }
        perCapability[name] = buckets
        guard !succeeded else { return }
        let failure = Failure(at: now, capability: name, agent: agent, pattern: error.map(ErrorPattern.classify) ?? .other,
            text: error.map { String(decoding: $0.utf8.prefix(Self.maxErrorText), as: UTF8.self) } ?? "")
        if failures.count < Self.failureRingSize {
            failures.append(failure)
        } else {
            failures[failureNext] = failure
        }
        failureNext = (failureNext + 1) % Self.failureRingSize
    }

    static func slot(of instant: Instant) -> Int64 {
        let span = bucketSpan.wholeNanoseconds
        return instant.nanoseconds >= 0 ? instant.nanoseconds / span : (instant.nanoseconds - span + 1) / span
    }

    public struct Counts: Sendable, Equatable {
        public var succeeded = 0
        public var failed = 0
        public var total: Int { succeeded + failed }
        public var failingRatio: Double { total == 0 ? 0 : Double(failed) / Double(total) }
        public var successRatio: Double { total == 0 ? 1 : Double(succeeded) / Double(total) }
    }

    /// Outcomes in the buckets of the last five minutes, per capability.
    public func recent(at now: Instant) -> [String: Counts] {
        let newest = Self.slot(of: now)
        var result: [String: Counts] = [:]
        for (capability, buckets) in perCapability {
            var counts = Counts()
            for bucket in buckets where bucket.slot > newest - Int64(Self.buckets) && bucket.slot <= newest {
                counts.succeeded += bucket.succeeded
                counts.failed += bucket.failed
            }
            if counts.total > 0 { result[capability] = counts }
        }
        return result
    }

    /// Failures no older than `span` (inclusive at exactly `span`), newest last.
    public func failures(within span: Duration, at now: Instant) -> [Failure] {
        failures.filter { now - $0.at <= span && $0.at <= now }.sorted { $0.at < $1.at }
    }
}
