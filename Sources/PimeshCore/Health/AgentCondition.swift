/// What the lead believes about one agent's health, most serious last. Routing sends work only
/// to `alive` agents; the others are what detection found.
public enum AgentCondition: String, Sendable, Equatable, Codable, CaseIterable {
    /// Registered, no heartbeat seen since the lead started.
    case unknown
    case alive
    /// Stopped by an operator: silent on purpose, never suspected.
    case frozen
    /// phi accrual crossed its threshold and the lead cannot see the process.
    case suspected
    /// The process is alive but silent (liveness probe), or holds work with no progress.
    case hung
    /// Progress without completions (seed 000 anomaly_type LOOP).
    case looping
    /// The process exited; the supervisor decides what next.
    case exited
    /// Said goodbye (`POST /v1/agents/{id}/leave`): gone on purpose, not a failure
    /// (memberlist's leave, not its failure).
    case left
    /// No manifest expects it and it has been silent past `agents.expire_after_s`: kept in the
    /// store, out of the healthy ratio, alive again at its next heartbeat.
    case departed
    /// Stopped by an operator (`pimesh agent stop`) or by a reload that removed its manifest:
    /// down on purpose, like systemctl's inactive; it stays so until started.
    case stopped

    /// Counts against the group breaker and orphans the agent's tasks.
    public var isFailure: Bool {
        switch self {
        case .suspected, .hung, .looping, .exited: true
        case .unknown, .alive, .frozen, .left, .departed, .stopped: false
        }
    }

    /// Out on purpose (an operator's stop or freeze, a goodbye, an expiry): not failing, not
    /// in the healthy ratio or the incident triggers, and not asked to answer an ask or a
    /// broadcast, whose quorum it would otherwise hold back as silent.
    public var isOutOnPurpose: Bool {
        switch self {
        case .frozen, .left, .departed, .stopped: true
        case .unknown, .alive, .suspected, .hung, .looping, .exited: false
        }
    }

    /// Healthy for the degradation ratio and the incident triggers: alive and answering.
    /// Seed 001 makes CONFLICT an answer ("I received this, but it contradicts …"), not a
    /// failure, so a READY or CONFLICT agent is healthy; a silent one (TRANSIT) is not.
    public static func isHealthy(_ condition: AgentCondition, reporting state: TrinaryState) -> Bool {
        condition == .alive && state != .transit
    }
}
