/// DESIGN.md §5: the lead counts its own writes (`/proc/self/io` write_bytes, a counter since it
/// started) against `store.write_budget_mb_per_day` and stretches its checkpoint interval when
/// it runs ahead. Fixed memory: 24 one-hour buckets.
public struct WriteBudget: Sendable {
    public let bytesPerDay: UInt64
    /// The longest stretch: the 5 min default checkpoint becomes at most an hour.
    public static let maximumStretch = 12.0

    private var hours: [(number: Int64, bytes: UInt64)] = Array(repeating: (.min, 0), count: 24)
    private var lastCounter: UInt64?

    public init(bytesPerDay: UInt64) {
        self.bytesPerDay = bytesPerDay
    }

    private static func hour(of now: Instant) -> Int64 {
        now.bucket(of: .seconds(3600))
    }

    /// The lead's cumulative written bytes at `now`; what it wrote since the last reading is
    /// charged to this hour. A counter that went backwards (a new process) starts afresh.
    public mutating func record(writtenBytes counter: UInt64, at now: Instant) {
        defer { lastCounter = counter }
        guard let last = lastCounter, counter >= last else { return }
        let number = Self.hour(of: now)
        let slot = Int(((number % 24) + 24) % 24)
        if hours[slot].number != number { hours[slot] = (number, 0) }
        hours[slot].bytes += counter - last
    }

    private func written(inLast count: Int64, at now: Instant) -> UInt64 {
        let current = Self.hour(of: now)
        return hours.reduce(0) { sum, hour in hour.number <= current && hour.number > current - count ? sum + hour.bytes : sum }
    }

    /// Written in the last 24 hours (whole hour buckets).
    public func usedLastDay(at now: Instant) -> UInt64 { written(inLast: 24, at: now) }

    /// Written this hour and the one before, as a day's pace.
    public func projectedPerDay(at now: Instant) -> UInt64 { written(inLast: 2, at: now) * 12 }

    /// How much longer checkpoint intervals are: 1 while the last day and the recent pace are
    /// within the budget; else the ratio by which the worse of the two is over it, at most 12.
    public func checkpointStretch(at now: Instant) -> Double {
        guard bytesPerDay > 0 else { return 1 }
        let ahead = Double(max(usedLastDay(at: now), projectedPerDay(at: now))) / Double(bytesPerDay)
        return min(Self.maximumStretch, max(1, ahead))
    }
}
