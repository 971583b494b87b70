/// Chooses the agent that will answer a task soonest (DESIGN.md §3, seed 001 §3.1): among the
/// candidates with the capability that may take work, the lowest predicted arrival whose
/// arrival-time decision is not SKIP. A task is wanted as soon as possible, so WAIT never
/// applies to it: a deadline only rules agents out.
public struct TaskRouter: Sendable {
    public let scheduler: ArrivalScheduler

    public init(scheduler: ArrivalScheduler = ArrivalScheduler()) {
        self.scheduler = scheduler
    }

    public struct Choice: Sendable, Equatable {
        public var index: Int
        public var predictedArrivalMs: Double
        public var leadTimeMs: Double
        /// The next best eligible agent, so an operator can see by how much the choice won.
        public var runnerUp: RunnerUp?
        public var eligible: Int
    }

    public struct RunnerUp: Sendable, Equatable {
        public var index: Int
        public var predictedArrivalMs: Double
    }

    public enum Decision: Sendable, Equatable {
        case sendNow(Choice)
        case skip(TaskSkipReason)
    }

    /// `deadlineMs` is how long from now the result may take; nil means no deadline.
    public func route(_ candidates: [RouteCandidate], payloadWeight: Double, deadlineMs: Double?, now: Instant) -> Decision {
        guard !candidates.isEmpty else { return .skip(.noCapableAgent) }
        var notReady = 0
        var quarantined = 0
        var unhealthy = 0
        var limited = 0
        var best: (index: Int, arrival: Double, lead: Double)?
        var second: RunnerUp?
        var eligible = 0
        var fastestLeadTime = Double.infinity
        for (index, candidate) in candidates.enumerated() {
            switch candidate.availability {
            case .notReady:
                notReady += 1
                continue
            case .quarantined:
                quarantined += 1
                continue
            case .unhealthy:
                unhealthy += 1
                continue
            case .limited:
                limited += 1
                continue
            case .available:
                break
            }
            let arrival = candidate.predictedArrivalMs(payloadWeight: payloadWeight)
            let lead = candidate.leadTimeMs(payloadWeight: payloadWeight)
            fastestLeadTime = min(fastestLeadTime, lead)
            if let deadlineMs {
                let target = now.advanced(byMilliseconds: deadlineMs)
                if case .skip = scheduler.decide(targetArrival: target, leadTimeMs: lead, now: now) { continue }
            }
            eligible += 1
            if let current = best {
                if arrival < current.arrival {
                    second = RunnerUp(index: current.index, predictedArrivalMs: current.arrival)
                    best = (index, arrival, lead)
                } else if second.map({ arrival < $0.predictedArrivalMs }) ?? true {
                    second = RunnerUp(index: index, predictedArrivalMs: arrival)
                }
            } else {
                best = (index, arrival, lead)
            }
        }
        if let best {
            return .sendNow(
                Choice(index: best.index, predictedArrivalMs: best.arrival, leadTimeMs: best.lead, runnerUp: second, eligible: eligible))
        }
        if notReady + quarantined + unhealthy + limited == candidates.count {
            return .skip(
                .noAvailableAgent(
                    capable: candidates.count, notReady: notReady, quarantined: quarantined, unhealthy: unhealthy, limited: limited))
        }
        return .skip(.deadlineUnreachable(fastestLeadTimeMs: fastestLeadTime, deadlineMs: deadlineMs ?? 0))
    }
}
