/// Seed 001 message `ttl_ms`: "time to live, drop if exceeded". A task still waiting in the
/// queue when its time to live has passed since submission is dropped, not run stale; a task
/// already with an agent runs to its result or its lease.
public enum TaskExpiry {
    /// Measured on the monotonic clock (`WallAge`): a Pi's first NTP sync after boot steps the
    /// wall clock by hours, which dropped every queued task at once. `queuedSince` is when the
    /// task was submitted on this run's monotonic clock (after a restart, from `WallAge`).
    public static func isExpired(queuedSince: Instant, ttlMs: Int?, now: Instant) -> Bool {
        guard let ttlMs else { return false }
        return now - queuedSince > .milliseconds(ttlMs)
    }

    /// Never handed out: SKIP `ttl_exceeded`. Handed out before and requeued: FAILED, since an
    /// agent spent work on it. `waited`: how long it was queued, on the monotonic clock.
    public static func expire<Row: ExpiringTask>(_ row: inout Row, waited: Duration, nowMs: Int64) {
        let waitedMs = waited.wholeNanoseconds / 1_000_000
        let reason = TaskSkipReason.expired(ttlMs: row.ttlMs ?? 0, waitedMs: waitedMs)
        row.finishedAtMs = nowMs
        if row.attempts == 0 {
            row.state = .skipped
            row.skipReason = reason.description
            row.error = reason.code
        } else {
            row.state = .failed
            // The description starts with the code already.
            row.error = reason.description
        }
    }
}

/// What `TaskExpiry.expire` reads and writes: the store's task row.
public protocol ExpiringTask {
    var ttlMs: Int? { get }
    var attempts: Int { get }
    var state: TaskState { get set }
    var finishedAtMs: Int64? { get set }
    var skipReason: String? { get set }
    var error: String? { get set }
}
