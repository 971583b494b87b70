/// Why a task was not sent anywhere: each names what an operator can change.
public enum TaskSkipReason: Sendable, Equatable, CustomStringConvertible {
    case noCapableAgent
    case noAvailableAgent(capable: Int, notReady: Int, quarantined: Int, unhealthy: Int = 0, limited: Int = 0)
    /// Seed 001 §6.2: the capability's group breaker is open after repeated agent failures.
    case groupBreakerOpen(capability: String)
    /// Seed 001 §6.3: the node is degraded and sheds tasks below `minimumPriority`.
    case shed(level: DegradationLevel, priority: Int, minimumPriority: Int)
    /// Seed 001 `insufficient_lead_time`, for the fastest agent that could take the task.
    case deadlineUnreachable(fastestLeadTimeMs: Double, deadlineMs: Double)
    /// Seed 001 `ttl_ms`: it waited in the queue longer than its time to live.
    case expired(ttlMs: Int, waitedMs: Int64)

    /// A stable code for scripts.
    public var code: String {
        switch self {
        case .noCapableAgent: "no_capable_agent"
        case .noAvailableAgent: "no_available_agent"
        case .deadlineUnreachable: "insufficient_lead_time"
        case .groupBreakerOpen: "breaker_open"
        case .shed: "shed"
        case .expired: "ttl_exceeded"
        }
    }

    public var description: String {
        switch self {
        case .noCapableAgent:
            "no registered agent has this capability"
        case let .noAvailableAgent(capable, notReady, quarantined, unhealthy, limited):
            "\(capable) agent(s) have this capability but none can take work: \(notReady) not READY, \(quarantined) quarantined"
                + (unhealthy > 0 ? ", \(unhealthy) failed or frozen" : "") + (limited > 0 ? ", \(limited) at their canary or breaker limit" : "")
        case let .groupBreakerOpen(capability):
            "the group breaker of \"\(capability)\" is open after repeated agent failures; it is probed again within 30 s"
        case let .shed(level, priority, minimumPriority):
            "shed: the node is \(level.rawValue) and sheds tasks below priority \(minimumPriority); this one has \(priority)"
        case let .deadlineUnreachable(fastest, deadline):
            "insufficient_lead_time: the fastest agent needs \(Int64(saturating: fastest)) ms, the deadline allows \(Int64(saturating: deadline)) ms"
        case let .expired(ttl, waited):
            "ttl_exceeded: queued \(waited) ms, longer than its time to live of \(ttl) ms (ttl_ms)"
        }
    }
}
