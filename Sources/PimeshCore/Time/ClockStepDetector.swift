/// Notices the wall clock stepping: its offset from the monotonic clock moving by more than
/// `threshold` between two readings. NTP slews a running clock by at most 500 ppm (0.5 ms a
/// second); anything faster is a step: a Pi's first sync after boot (no RTC, so it starts at
/// fake-hwclock's saved time), `date -s`, an NTP correction. Seed 003's root cause looks for one
/// before agents went silent, and the audit log records it.
public struct ClockStepDetector: Sendable {
    public var threshold: Duration
    private var lastOffsetMs: Int64?

    public init(threshold: Duration = .seconds(1)) {
        self.threshold = threshold
    }

    /// The step in milliseconds (positive: forward) since the previous reading, or nil.
    public mutating func observe(wallMs: Int64, now: Instant) -> Int64? {
        let offsetMs = wallMs.saturatingSubtract(now.nanoseconds / 1_000_000)
        defer { lastOffsetMs = offsetMs }
        guard let lastOffsetMs else { return nil }
        let stepMs = offsetMs.saturatingSubtract(lastOffsetMs)
        let size = stepMs == .min ? Int64.max : abs(stepMs)
        return Double(size) > threshold.milliseconds ? stepMs : nil
    }

    /// "forward by 3 h 2 min 5 s", "back by 1.5 s".
    public static func describe(stepMs: Int64) -> String {
        let direction = stepMs >= 0 ? "forward" : "back"
        let size = stepMs == .min ? UInt64(Int64.max) + 1 : UInt64(abs(stepMs))
        // Readings a millisecond apart make a 3 h step 2 h 59 min 59.999 s: whole seconds,
        // rounded, past ten.
        var seconds = size >= 10_000 ? (size + 500) / 1000 : size / 1000
        let parts: [(UInt64, String)] = [(86_400, "d"), (3600, "h"), (60, "min")]
        var text: [String] = []
        for (unit, name) in parts where seconds >= unit {
            text.append("\(seconds / unit) \(name)")
            seconds %= unit
        }
        if text.isEmpty {
            text.append(size % 1000 == 0 ? "\(seconds) s" : "\(seconds).\(size % 1000 / 100) s")
        } else if seconds > 0 {
            text.append("\(seconds) s")
        }
        return "\(direction) by " + text.joined(separator: " ")
    }
}
