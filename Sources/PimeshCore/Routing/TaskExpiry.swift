/// Seed 001 message `ttl_ms`: "time to live, drop if exceeded". A task still waiting in the
/// queue when its time to live has passed since submission is dropped, not run stale; a task
/// already with an agent runs to its result or its lease.
public enum TaskExpiry {
    /// Wall clock on both sides: a queued task survives a restart, and its age with it.
    public static func isExpired(submittedAtMs: Int64, ttlMs: Int?, nowMs: Int64) -> Bool {
        guard let ttlMs else { return false }
        return nowMs - submittedAtMs > Int64(ttlMs)
    }

    /// Never handed out: SKIP `ttl_exceeded`. Handed out before and requeued: FAILED, since an
    /// agent spent work on it.
    public static func expire<Row: ExpiringTask>(_ row: inout Row, nowMs: Int64) {
        let reason = TaskSkipReason.expired(ttlMs: row.ttlMs ?? 0, waitedMs: nowMs - row.submittedAtMs)
        row.finishedAtMs = nowMs
        if row.attempts == 0 {
            row.state = .skipped
            row.skipReason = reason.description
            row.error = reason.code
        } else {
            row.state = .failed
            row.error = "\(reason.code): \(reason.description)"
        }
    }
}

/// What `TaskExpiry.expire` reads and writes: the store's task row.
public protocol ExpiringTask {
    var ttlMs: Int? { get }
    var submittedAtMs: Int64 { get }
    var attempts: Int { get }
    var state: TaskState { get set }
    var finishedAtMs: Int64? { get set }
    var skipReason: String? { get set }
    var error: String? { get set }
}
