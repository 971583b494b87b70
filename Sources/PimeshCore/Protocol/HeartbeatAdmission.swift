/// The rules a decoded heartbeat with a valid tag must still pass: strictly increasing
/// iteration (no replay) and a timestamp close to the lead's clock (no stale capture).
public struct HeartbeatAdmission: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Agents run on the same Pi as the lead and share its clock, so anything further
        /// apart than this is a captured old datagram or a broken clock, not a live heartbeat.
        public var maxClockSkewMs: Int64

        public init(maxClockSkewMs: Int64 = 30_000) {
            self.maxClockSkewMs = maxClockSkewMs
        }
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// nil when the heartbeat is admitted; otherwise why it is dropped. `notBeforeMs`: the
    /// time the agent's floor was lowered (`iterationCeiling`), before which it is stale, unless
    /// the clock has stepped back past it since: then every honest heartbeat would be older, and
    /// what was sent before the lowering is further ahead of the clock than the skew allows.
    public func check(iteration: UInt64, lastIteration: UInt64?, timestampMs: Int64, nowWallMs: Int64, notBeforeMs: Int64 = .min)
        -> HeartbeatDropReason?
    {
        if let lastIteration, iteration <= lastIteration { return .replayed }
        let skew = timestampMs > nowWallMs ? timestampMs &- nowWallMs : nowWallMs &- timestampMs
        if skew < 0 || skew > settings.maxClockSkewMs { return .stale }
        if timestampMs < notBeforeMs && notBeforeMs <= nowWallMs.addingReportingOverflow(settings.maxClockSkewMs).partialValue { return .stale }
        return nil
    }

    /// The highest iteration a starting agent is handed: the clock in microseconds (where both
    /// clients start) plus the skew allowed. A higher floor, stored from one signed heartbeat
    /// with iteration 2^64-1, kept every later one out for good.
    public func iterationCeiling(nowWallMs: Int64) -> UInt64 {
        let (allowedMs, late) = nowWallMs.addingReportingOverflow(settings.maxClockSkewMs)
        if late { return .max }
        let (micros, overflow) = UInt64(clamping: max(0, allowedMs)).multipliedReportingOverflow(by: 1000)
        return overflow ? .max : micros
    }
}
