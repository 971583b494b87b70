/// The targets an incident is timed against, on the monotonic clock from detection (docs/
/// incidents.md has the table). Seed 004's response times per severity; seed 002's playbook
/// SLOs for mitigation (one agent 60 s, critical agents together 120 s); seed 003's P1
/// timeline for a mass failure (root cause 15 min, mitigate 30, resolve 60).
public enum IncidentSLO {
    public enum Milestone: String, Codable, Sendable, CaseIterable {
        case acknowledged
        case firstResponse = "first_response"
        case rootCause = "root_cause"
        case mitigated
        case resolved
    }

    public struct Timer: Sendable, Equatable {
        public var name: String
        public var milestone: Milestone
        public var within: Duration
    }

    public static func timers(severity: Severity, kind: IncidentTrigger.Kind) -> [Timer] {
        let minutes = { (m: Int64) in Duration.seconds(m * 60) }
        let (acknowledge, firstResponse, resolve): (Duration, Duration, Duration) =
            switch severity {
            case .sev1: (minutes(5), minutes(15), minutes(60))
            case .sev2: (minutes(15), minutes(45), minutes(240))
            case .sev3: (minutes(30), minutes(90), minutes(480))
            case .sev4: (minutes(240), minutes(720), minutes(7 * 24 * 60))
            }
        var timers = [
            Timer(name: "acknowledge", milestone: .acknowledged, within: acknowledge),
            Timer(name: "first_response", milestone: .firstResponse, within: firstResponse),
            Timer(name: "resolve", milestone: .resolved, within: resolve),
        ]
        switch kind {
        case .agentDown: timers.append(Timer(name: "mitigate", milestone: .mitigated, within: .seconds(60)))
        case .criticalAgentsDown: timers.append(Timer(name: "mitigate", milestone: .mitigated, within: .seconds(120)))
        case .massFailure:
            timers.append(Timer(name: "root_cause", milestone: .rootCause, within: minutes(15)))
            timers.append(Timer(name: "mitigate", milestone: .mitigated, within: minutes(30)))
        default: break
        }
        return timers
    }

    /// Seed 004's status-update cadence: a note from an operator (or an acknowledgement) is an
    /// update; nil for SEV4 (a daily summary, not a node's business).
    public static func updateEvery(_ severity: Severity) -> Duration? {
        switch severity {
        case .sev1: .seconds(15 * 60)
        case .sev2: .seconds(30 * 60)
        case .sev3: .seconds(60 * 60)
        case .sev4: nil
        }
    }

    /// The people's escalation level E1–E4 reached by elapsed time (seed 004's paths): SEV1
    /// reaches E2 when declared, E3 after 2 h, E4 after 4 h; SEV2 reaches E2 after 1 h unless
    /// it was mitigated. Paging people is the coordinator's business; the node records the level.
    public static func escalation(severity: Severity, elapsed: Duration, mitigated: Bool) -> Int {
        switch severity {
        case .sev1:
            if elapsed >= .seconds(4 * 3600) { return 4 }
            if elapsed >= .seconds(2 * 3600) { return 3 }
            return 2
        case .sev2: return !mitigated && elapsed >= .seconds(3600) ? 2 : 1
        case .sev3, .sev4: return 1
        }
    }
}
