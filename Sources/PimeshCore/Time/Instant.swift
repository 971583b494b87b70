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
        Instant(nanoseconds: ms.saturatingMultiply(1_000_000))
    }

    public static func seconds(_ s: Int64) -> Instant {
        Instant(nanoseconds: s.saturatingMultiply(1_000_000_000))
    }

    /// Which `width`-long bucket since the clock's origin holds this instant (floor division,
    /// so that instants before the origin fall in one bucket each too): rolling windows use it.
    public func bucket(of width: Duration) -> Int64 {
        let ns = max(1, width.wholeNanoseconds)
        return nanoseconds >= 0 ? nanoseconds / ns : (nanoseconds - ns + 1) / ns
    }

    public static func < (lhs: Instant, rhs: Instant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    public static func + (lhs: Instant, rhs: Duration) -> Instant {
        Instant(nanoseconds: lhs.nanoseconds.saturatingAdd(rhs.wholeNanoseconds))
    }

    public static func - (lhs: Instant, rhs: Duration) -> Instant {
        let ns = rhs.wholeNanoseconds
        return Instant(nanoseconds: ns == .min ? .max : lhs.nanoseconds.saturatingAdd(-ns))
    }

    public static func - (lhs: Instant, rhs: Instant) -> Duration {
        let (difference, overflow) = lhs.nanoseconds.subtractingReportingOverflow(rhs.nanoseconds)
        guard overflow else { return .nanoseconds(difference) }
        return .nanoseconds(lhs.nanoseconds > rhs.nanoseconds ? Int64.max : Int64.min)
    }

    /// Saturates: a lead time of "forever" (an agent's extreme queue depth) is the end of time,
    /// not a trap (issue 20).
    public func advanced(byMilliseconds ms: Double) -> Instant {
        Instant(nanoseconds: nanoseconds.saturatingAdd(Int64(saturating: ms * 1_000_000)))
    }

    public var description: String {
        "Instant(\(nanoseconds)ns)"
    }
}

extension Duration {
    /// Whole nanoseconds; sub-nanosecond parts are dropped.
    public var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds.saturatingMultiply(1_000_000_000).saturatingAdd(attoseconds / 1_000_000_000)
    }

    public var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    public static func milliseconds(_ ms: Double) -> Duration {
        .nanoseconds(Int64(saturating: ms * 1_000_000))
    }
}
