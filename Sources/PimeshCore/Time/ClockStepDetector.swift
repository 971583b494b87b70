/// Notices the wall clock stepping: its offset from the monotonic clock moving by more than
/// `threshold` between two readings. NTP slews a running clock by at most 500 ppm (0.5 ms a
/// second); anything faster is a step: a Pi's first sync after boot (no RTC, so it starts at
/// fake-hwclock's saved time), `date -s`, an NTP correction. Seed 003's root cause looks for one
/// before agents went silent, and the audit log records it.
public struct ClockStepDetector: Sendable {
    public var threshold: Duration
    /// Steps after a report wait this long and are told together: a clock that steps again and
    /// again (a flapping time source) would otherwise write an event and an audit row each time.
    public var reportEvery: Duration
    private var lastOffsetMs: Int64?
    private var unreported = Report(steps: 0, netMs: 0)
    private var lastReportAt: Instant?
    /// When the latest step was seen, reported yet or not: root-cause evidence.
    public private(set) var lastStepAt: Instant?

    /// What to tell: how many steps since the last report, and their sum (positive: forward).
    public struct Report: Sendable, Equatable {
        public var steps: Int
        public var netMs: Int64

        public init(steps: Int, netMs: Int64) {
            self.steps = steps
            self.netMs = netMs
        }

        /// "stepped forward by 3 h", "stepped 200 times in 1 min, net back by 2 s".
        public var text: String {
            steps == 1 ? "stepped \(ClockStepDetector.describe(stepMs: netMs))" : "stepped \(steps) times, net \(ClockStepDetector.describe(stepMs: netMs))"
        }
    }

    public init(threshold: Duration = .seconds(1), reportEvery: Duration = .seconds(60)) {
        self.threshold = threshold
        self.reportEvery = reportEvery
    }

    /// Reads the clocks once more; returns a report when one is due: a first step at once,
    /// later ones at most once every `reportEvery`, summed. Call it regularly, step or not, so
    /// that steps held back are told.
    public mutating func observe(wallMs: Int64, now: Instant) -> Report? {
        let offsetMs = wallMs.saturatingSubtract(now.nanoseconds / 1_000_000)
        if let lastOffsetMs {
            let stepMs = offsetMs.saturatingSubtract(lastOffsetMs)
            if Self.isStep(stepMs, threshold) {
                lastStepAt = now
                unreported.steps += 1
                unreported.netMs = unreported.netMs.saturatingAdd(stepMs)
            }
        }
        lastOffsetMs = offsetMs
        guard unreported.steps > 0, lastReportAt.map({ now - $0 >= reportEvery }) ?? true else { return nil }
        defer {
            unreported = Report(steps: 0, netMs: 0)
            lastReportAt = now
        }
        return unreported
    }

    /// How far the wall clock stepped between an earlier reading of both clocks (the last
    /// audit row a lead wrote) and now: a step while no lead ran. Only on the same boot, where
    /// the monotonic clock went on; nil across a reboot, or when under `threshold`.
    public static func stepSince(
        wallMs: Int64, monoMs: Int64, bootID: String, nowWallMs: Int64, nowMonoMs: Int64, nowBootID: String,
        threshold: Duration = .seconds(1)
    ) -> Int64? {
        guard bootID == nowBootID, bootID != "unknown" else { return nil }
        let stepMs = nowWallMs.saturatingSubtract(nowMonoMs).saturatingSubtract(wallMs.saturatingSubtract(monoMs))
        return isStep(stepMs, threshold) ? stepMs : nil
    }

    private static func isStep(_ stepMs: Int64, _ threshold: Duration) -> Bool {
        Double(stepMs == .min ? Int64.max : abs(stepMs)) > threshold.milliseconds
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
