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

    public var description: String {
        switch self {
        case let .insufficientLeadTime(needed, available):
            "insufficient_lead_time: needs \(Self.format(needed)) ms, \(Self.format(available)) ms available"
        case let .closesBeforeSend(sendIn, closesIn):
            "closes_before_send: its send time is \(Self.format(sendIn)) ms away, the operation closes (timeout_ms) in \(Self.format(closesIn)) ms"
        }
    }

    private static func format(_ ms: Double) -> String {
        String(Int64(saturating: ms))
    }
}

public struct ArrivalScheduler: Sendable {
    public struct Settings: Sendable, Equatable {
        /// A send time this close to now is sent at once: a timer cannot wake more precisely
        /// than the event loop's tick, and 5 ms is below every class's base processing time.
        public var sendNowTolerance: Duration

        public init(sendNowTolerance: Duration = .milliseconds(5)) {
            self.sendNowTolerance = sendNowTolerance
        }
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    public func decide(targetArrival: Instant, leadTimeMs: Double, now: Instant) -> ArrivalDecision {
        let sendAt = targetArrival.advanced(byMilliseconds: -leadTimeMs)
        if sendAt < now - settings.sendNowTolerance {
            return .skip(.insufficientLeadTime(neededMs: leadTimeMs, availableMs: (targetArrival - now).milliseconds))
        }
        if sendAt <= now + settings.sendNowTolerance {
            return .sendNow(expectedArrival: now.advanced(byMilliseconds: leadTimeMs))
        }
        return .wait(until: sendAt)
    }
}
