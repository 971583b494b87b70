/// A rate limit with a burst: `ratePerSecond` tokens arrive each second, up to `burst` wait
/// unspent. Registrations use it so that a leaked join token cannot grow the registry faster
/// than an operator can notice.
public struct TokenBucket: Sendable, Equatable {
    public let ratePerSecond: Double
    public let burst: Double
    private var tokens: Double
    private var updatedAt: Instant?

    public init(ratePerSecond: Double, burst: Double) {
        self.ratePerSecond = max(ratePerSecond, 0.001)
        self.burst = max(burst, 1)
        self.tokens = self.burst
    }

    /// Takes one token when there is one; otherwise says how long until there will be.
    public mutating func take(at now: Instant) -> Duration? {
        refill(at: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return .milliseconds(Int(((1 - tokens) / ratePerSecond * 1000).rounded(.up)))
    }

    private mutating func refill(at now: Instant) {
        if let updatedAt, now > updatedAt {
            tokens = min(burst, tokens + (now - updatedAt).milliseconds / 1000 * ratePerSecond)
        }
        if updatedAt.map({ now > $0 }) ?? true { updatedAt = now }
    }
}
