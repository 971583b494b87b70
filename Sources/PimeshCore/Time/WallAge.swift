/// Deadlines and ages on this run's monotonic clock. A Pi has no RTC, and its wall clock steps
/// (forward by hours at the first NTP sync after boot, back at times): a time to live or a
/// resolve-by deadline judged on it fires for everything at once, or not for hours. What the
/// lead times in one run starts from a monotonic instant; only a stored wall-clock time read
/// back after a restart needs converting, and this does it.
public enum WallAge {
    /// The instant on this run's monotonic clock that `wallMs` was, by the wall clock now: it
    /// starts this run as old as the wall clock says, and never younger than new (a time in the
    /// future means the clock stepped back since).
    public static func instant(ofWallMs wallMs: Int64, nowWallMs: Int64, now: Instant) -> Instant {
        now - .milliseconds(max(0, nowWallMs.saturatingSubtract(wallMs)))
    }
}
