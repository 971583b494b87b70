/// A point on a monotonic time line, as nanoseconds from an arbitrary origin.
///
/// The core never reads a clock: the shell passes `now` in, and tests drive a manual clock
/// (DESIGN.md §1). Wall-clock times (heartbeat `timestamp_ms`) stay plain `Int64` milliseconds.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public static func milliseconds(_ ms: Int64) -> Instant {
        Instant(nanoseconds: ms * 1_000_000)
    }

    public static func seconds(_ s: Int64) -> Instant {
        Instant(nanoseconds: s * 1_000_000_000)
    }

    public static func < (lhs: Instant, rhs: Instant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    public static func + (lhs: Instant, rhs: Duration) -> Instant {
        Instant(nanoseconds: lhs.nanoseconds + rhs.wholeNanoseconds)
    }

    public static func - (lhs: Instant, rhs: Duration) -> Instant {
        Instant(nanoseconds: lhs.nanoseconds - rhs.wholeNanoseconds)
    }

    public static func - (lhs: Instant, rhs: Instant) -> Duration {
        .nanoseconds(lhs.nanoseconds - rhs.nanoseconds)
    }

    public func advanced(byMilliseconds ms: Double) -> Instant {
        Instant(nanoseconds: nanoseconds + Int64((ms * 1_000_000).rounded()))
    }

    public var description: String {
        "Instant(\(nanoseconds)ns)"
    }
}

extension Duration {
    /// Whole nanoseconds; sub-nanosecond parts are dropped.
    public var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    public var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    public static func milliseconds(_ ms: Double) -> Duration {
        .nanoseconds(Int64((ms * 1_000_000).rounded()))
    }
}
