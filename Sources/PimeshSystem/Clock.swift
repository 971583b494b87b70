import Glibc
import PimeshCore

/// Wall and monotonic time for the shell and agents, from clock_gettime.
public enum Clock {
    public static func wallMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    public static func monotonicNow() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }
}

/// The wall clock as retention reads it (`RetentionTime`): from this value's creation, which
/// the lead makes at its start, it never runs ahead of the monotonic clock.
public struct RetentionClock: Sendable {
    private let startMs: Int64
    private let start = Clock.monotonicNow()

    /// `newestStoredMs`: the newest wall-clock time among the rows it will judge, if any.
    public init(newestStoredMs: Int64? = nil) {
        startMs = RetentionTime.startMs(wallAtStartMs: Clock.wallMilliseconds(), newestStoredMs: newestStoredMs)
    }

    public func nowMs() -> Int64 {
        RetentionTime.nowMs(wallNowMs: Clock.wallMilliseconds(), wallAtStartMs: startMs, sinceStart: Clock.monotonicNow() - start)
    }
}
