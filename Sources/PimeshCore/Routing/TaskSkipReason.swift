/// Why a task was not sent anywhere: each names what an operator can change.
public enum TaskSkipReason: Sendable, Equatable, CustomStringConvertible {
    case noCapableAgent
    case noAvailableAgent(capable: Int, notReady: Int, quarantined: Int)
    /// Seed 001 `insufficient_lead_time`, for the fastest agent that could take the task.
    case deadlineUnreachable(fastestLeadTimeMs: Double, deadlineMs: Double)

    /// A stable code for scripts.
    public var code: String {
        switch self {
        case .noCapableAgent: "no_capable_agent"
        case .noAvailableAgent: "no_available_agent"
        case .deadlineUnreachable: "insufficient_lead_time"
        }
    }

    public var description: String {
        switch self {
        case .noCapableAgent:
            "no registered agent has this capability"
        case let .noAvailableAgent(capable, notReady, quarantined):
            "\(capable) agent(s) have this capability but none can take work: \(notReady) not READY, \(quarantined) quarantined"
        case let .deadlineUnreachable(fastest, deadline):
            "insufficient_lead_time: the fastest agent needs \(Int(fastest.rounded())) ms, the deadline allows \(Int(deadline.rounded())) ms"
        }
    }
}
