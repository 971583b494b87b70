/// Arrival-time send scheduling (seed 001 §3.1 `calculate_send_times`): send each agent its
/// work at `target − lead time` so that it is READY at the target, or skip it when too late.
public enum ArrivalDecision: Equatable, Sendable {
    case sendNow(expectedArrival: Instant)
    case wait(until: Instant)
    case skip(SkipReason)
}

public enum SkipReason: Equatable, Sendable, CustomStringConvertible {
    /// The seed's `insufficient_lead_time`: the agent would need more time than is left.
    case insufficientLeadTime(neededMs: Double, availableMs: Double)
    /// A scatter-gather's `timeout_ms` ends it before this agent's send time comes.
    case closesBeforeSend(sendInMs: Double, closesInMs: Double)
    /// Seed 001 "impedance compensation range: 0 ms to 1000 ms lead time": an agent that needs
    /// more cannot be made to arrive with the others.
    case beyondCompensationRange(neededMs: Double, maximumMs: Double)

    public var description: String {
        switch self {
        case let .insufficientLeadTime(needed, available):
            "insufficient_lead_time: needs \(Self.format(needed)) ms, \(Self.format(available)) ms available"
        case let .closesBeforeSend(sendIn, closesIn):
            "closes_before_send: its send time is \(Self.format(sendIn)) ms away, the operation closes (timeout_ms) in \(Self.format(closesIn)) ms"
        case let .beyondCompensationRange(needed, maximum):
            "beyond_compensation_range: needs \(Self.format(needed)) ms of lead time, arrival compensation covers \(Self.format(maximum)) ms"
        }
    }

    private static func format(_ ms: Double) -> String {
        String(Int64(saturating: ms))
    }
}

public struct ArrivalScheduler: Sendable {
    public struct Settings: Sendable, Equatable {
        /// A send time this close *ahead* of now is sent at once: a timer cannot wake more
        /// precisely than the event loop's tick, and arriving 5 ms early is inside every window.
        /// A send time already past is the seed's SKIP, however little.
        public var sendNowTolerance: Duration
        /// Seed 001: "impedance compensation range: 0 ms to 1000 ms lead time".
        public var maximumLeadTime: Duration

        public init(sendNowTolerance: Duration = .milliseconds(5), maximumLeadTime: Duration = .seconds(1)) {
            self.sendNowTolerance = sendNowTolerance
            self.maximumLeadTime = maximumLeadTime
        }
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    public func decide(targetArrival: Instant, leadTimeMs: Double, now: Instant) -> ArrivalDecision {
        let lead = max(0, leadTimeMs)
        let maximumMs = settings.maximumLeadTime.milliseconds
        if lead > maximumMs {
            return .skip(.beyondCompensationRange(neededMs: lead, maximumMs: maximumMs))
        }
        let availableMs = (targetArrival - now).milliseconds
        if !Self.canArrive(leadTimeMs: lead, withinMs: availableMs) {
            return .skip(.insufficientLeadTime(neededMs: lead, availableMs: availableMs))
        }
        let sendAt = targetArrival.advanced(byMilliseconds: -lead)
        if sendAt <= now + settings.sendNowTolerance {
            return .sendNow(expectedArrival: now.advanced(byMilliseconds: lead))
        }
        return .wait(until: sendAt)
    }

    /// The seed's `send_time < now → SKIP`, for a target `availableMs` from now: the one test
    /// both arrival scheduling and a task's deadline use. A task is sent at once rather than
    /// compensated, so the 1 s compensation range does not apply to it.
    public static func canArrive(leadTimeMs: Double, withinMs availableMs: Double) -> Bool {
        leadTimeMs <= availableMs
    }
}
