/// Whether a body that arrives over time still deserves its slot (the coordinator's snapshot
/// uploads). Past `grace`, it must have brought `slowestBytesPerSecond` for each second since
/// the grace ended, and each `window` since must have brought that rate too: the average alone
/// let a sender deliver most of a body at once and then trickle the rest for days.
public struct UploadPace: Sendable {
    let graceEnds: Instant
    let slowestBytesPerSecond: UInt64
    let window: Duration
    var windowStart: Instant?
    var windowStartBytes: UInt64 = 0

    public init(startedAt: Instant, grace: Duration, slowestBytesPerSecond: UInt64, window: Duration = .seconds(60)) {
        graceEnds = startedAt + grace
        self.slowestBytesPerSecond = slowestBytesPerSecond
        self.window = window
    }

    /// `received`: all bytes so far, at `now`.
    public mutating func admits(received: UInt64, at now: Instant) -> Bool {
        guard now > graceEnds else { return true }
        func owed(over duration: Duration) -> UInt64 {
            let (product, overflow) = UInt64(max(0, duration.wholeNanoseconds / 1_000_000)).multipliedReportingOverflow(by: slowestBytesPerSecond)
            return overflow ? .max : product / 1000
        }
        guard received >= owed(over: now - graceEnds) else { return false }
        // The first window starts with the first bytes after the grace.
        guard let start = windowStart else {
            windowStart = now
            windowStartBytes = received
            return true
        }
        guard now - start >= window else { return true }
        guard received - windowStartBytes >= owed(over: now - start) else { return false }
        windowStart = now
        windowStartBytes = received
        return true
    }
}
