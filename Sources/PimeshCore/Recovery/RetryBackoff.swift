/// How long to wait before retrying an upload: exponential from `initial` to `maximum`, each
/// delay spread by ±`jitter` so that a fleet of Pis that lost the same coordinator does not
/// come back in step (the AWS "exponential backoff and jitter" pattern).
public struct RetryBackoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var jitter: Double

    public init(initial: Duration = .seconds(1), maximum: Duration = .seconds(300), jitter: Double = 0.2) {
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// The delay after `failures` failures in a row (1 or more); `random` is uniform in 0..<1,
    /// passed in so that tests choose it.
    public func delay(afterFailures failures: Int, random: Double) -> Duration {
        var base = initial.milliseconds
        for _ in 1..<max(1, min(failures, 40)) {
            base *= 2
            if base >= maximum.milliseconds { break }
        }
        base = min(base, maximum.milliseconds)
        let spread = 1 + jitter * (2 * random - 1)
        return .milliseconds(base * spread)
    }
}
