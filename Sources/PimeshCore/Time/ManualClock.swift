/// A clock that moves only when told to: the core's tests, benchmarks and simulations step it.
public struct ManualClock: Sendable {
    public private(set) var now: Instant

    public init(start: Instant = Instant(nanoseconds: 0)) {
        self.now = start
    }

    public mutating func advance(by duration: Duration) {
        now = now + duration
    }
}
