/// Chooses the agent for a task (DESIGN.md §3, seed 001 §3.1 "route to the agent with the
/// lowest impedance"): among the candidates with the capability that may take work and can
/// meet the deadline, the lowest `RouteCandidate.costMs` — expected time to a successful
/// answer — preferring agents that are neither degraded nor spiking. A task is wanted as soon
/// as possible, so WAIT never applies to it: a deadline only rules agents out.
public struct TaskRouter: Sendable {
    public init() {}

    public struct Choice: Sendable, Equatable {
        public var index: Int
        public var predictedArrivalMs: Double
        public var leadTimeMs: Double
        public var costMs: Double
        /// The next best eligible agent, so an operator can see by how much the choice won.
        public var runnerUp: RunnerUp?
        public var eligible: Int
        /// Eligible agents passed over because they were degraded or spiking.
        public var avoided: Int
        /// The choice itself was degraded or spiking: no other agent could meet the deadline.
        public var chosenDespiteAvoidance: Bool

        /// One line for the task view: why this agent.
        public var why: String {
            var text = "lowest expected time to a successful answer among \(eligible) eligible"
            if avoided > 0 { text += "; \(avoided) degraded or spiking agent(s) routed around" }
            if chosenDespiteAvoidance { text += "; the chosen agent is degraded or spiking, but no other can meet the deadline" }
            return text
        }
    }

    public struct RunnerUp: Sendable, Equatable {
        public var index: Int
        public var predictedArrivalMs: Double
        public var costMs: Double
    }

    public enum Decision: Sendable, Equatable {
        case sendNow(Choice)
        case skip(TaskSkipReason)
    }

    private struct Ranked {
        var index: Int
        var arrival: Double
        var lead: Double
        var cost: Double
    }

    /// Best and second best of one tier; ties keep the earlier candidate (the registry's stable order).
    private struct Podium {
        var best: Ranked?
        var second: Ranked?
        var count = 0

        mutating func offer(_ entry: Ranked) {
            count += 1
            if let current = best, entry.cost >= current.cost {
                if second.map({ entry.cost < $0.cost }) ?? true { second = entry }
            } else {
                second = best
                best = entry
            }
        }
    }

    /// `deadlineMs` is how long from now the result may take; nil means no deadline.
    public func route(_ candidates: [RouteCandidate], payloadWeight: Double, deadlineMs: Double?, now: Instant) -> Decision {
        guard !candidates.isEmpty else { return .skip(.noCapableAgent) }
        var notReady = 0
        var quarantined = 0
        var unhealthy = 0
        var limited = 0
        var preferred = Podium()
        var avoided = Podium()
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
            let lead = candidate.leadTimeMs(payloadWeight: payloadWeight)
            fastestLeadTime = min(fastestLeadTime, lead)
            if let deadlineMs, !ArrivalScheduler.canArrive(leadTimeMs: lead, withinMs: deadlineMs) { continue }
            let entry = Ranked(
                index: index, arrival: candidate.predictedArrivalMs(payloadWeight: payloadWeight), lead: lead,
                cost: candidate.costMs(payloadWeight: payloadWeight))
            if candidate.isAvoided { avoided.offer(entry) } else { preferred.offer(entry) }
        }
        let tier = preferred.best != nil ? preferred : avoided
        if let best = tier.best {
            // The runner-up is the next agent the router would have taken: from the same tier,
            // or the best avoided one when the preferred tier had only the choice.
            let next = tier.second ?? (preferred.best != nil ? avoided.best : nil)
            return .sendNow(
                Choice(
                    index: best.index, predictedArrivalMs: best.arrival, leadTimeMs: best.lead, costMs: best.cost,
                    runnerUp: next.map { RunnerUp(index: $0.index, predictedArrivalMs: $0.arrival, costMs: $0.cost) },
                    eligible: preferred.count + avoided.count, avoided: preferred.best != nil ? avoided.count : 0,
                    chosenDespiteAvoidance: preferred.best == nil))
        }
        if notReady + quarantined + unhealthy + limited == candidates.count {
            return .skip(
                .noAvailableAgent(
                    capable: candidates.count, notReady: notReady, quarantined: quarantined, unhealthy: unhealthy, limited: limited))
        }
        return .skip(.deadlineUnreachable(fastestLeadTimeMs: fastestLeadTime, deadlineMs: deadlineMs ?? 0))
    }
}
