/// Conversions that cannot trap. Agents send the numbers that feed time and score arithmetic
/// (queue depth, progress, timestamps), and one signed heartbeat with an extreme queue depth
/// once pushed a lead time past what `Int64` nanoseconds hold: a Swift trap, the lead gone.
/// Every Double → integer conversion on a path an agent can influence goes through these.
extension Int64 {
    /// Rounds to nearest; ±infinity and anything outside `Int64` clamp to its bounds, NaN is 0
    /// (an undefined duration adds nothing rather than "forever").
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9_223_372_036_854_775_807.0 {
            self = .max
        } else if value <= -9_223_372_036_854_775_808.0 {
            self = .min
        } else {
            self = Int64(value.rounded())
        }
    }

    /// `self + other`, held at the bounds instead of overflowing.
    public func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }

    /// `self - other`, held at the bounds instead of overflowing.
    public func saturatingSubtract(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        guard overflow else { return difference }
        return other < 0 ? .max : .min
    }

    public func saturatingMultiply(_ other: Int64) -> Int64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        guard overflow else { return product }
        return (self > 0) == (other > 0) ? .max : .min
    }
}

extension Int {
    /// A 0…1000 impedance score from `1000 × (1 − quality)`; a quality that is not a number
    /// (a NaN from an input the checks missed) is the worst score, never a trap.
    public static func score(fromQuality quality: Double) -> Int {
        guard quality.isFinite else { return 1000 }
        return Swift.min(1000, Swift.max(0, Int((1000 * (1 - Swift.min(Swift.max(quality, 0), 1))).rounded())))
    }
}
