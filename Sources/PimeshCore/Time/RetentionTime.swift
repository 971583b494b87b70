/// "Now" for deleting what is old (finished tasks, uploaded audit rows). A Pi has no RTC: it
/// boots at fake-hwclock's saved time and NTP then steps the clock forward, by days after the
/// Pi was off that long. Judged on the wall clock alone, that step aged every row at once, and
/// the lead deleted them all (and forgot their idempotency keys, so a resubmission ran twice).
/// So this clock never runs ahead of its reading at the lead's start plus the monotonic time
/// since: a step forward deletes nothing early, and rows are kept longer instead, within the
/// count and byte bounds, which do not depend on any clock.
public enum RetentionTime {
    public static func nowMs(wallNowMs: Int64, wallAtStartMs: Int64, sinceStart: Duration) -> Int64 {
        min(wallNowMs, wallAtStartMs.saturatingAdd(sinceStart.wholeNanoseconds / 1_000_000))
    }

    /// Where that clock starts. A lead started after the clock stepped forward while it was
    /// down cannot tell the step from time passing (the monotonic clock restarts with a boot):
    /// it starts no later than the newest row it holds, so that what it deletes by age is old
    /// by the store's own account. After real downtime that keeps rows longer, within the
    /// count and byte bounds.
    public static func startMs(wallAtStartMs: Int64, newestStoredMs: Int64?) -> Int64 {
        min(wallAtStartMs, newestStoredMs ?? wallAtStartMs)
    }
}
