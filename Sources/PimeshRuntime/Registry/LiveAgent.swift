import PimeshAgent
import PimeshCore
import PimeshStore

/// A registered agent's hot state in RAM; nothing here is written per heartbeat.
struct LiveAgent: Sendable {
    var row: AgentRowSummary
    let tag: HeartbeatTag
    var tracker: ImpedanceTracker
    var lastIteration: UInt64?
    var reportedState: TrinaryState = .transit
    var progress: UInt64 = 0
    var lastHeartbeat: Instant?
    /// The iteration in the last checkpoint; a checkpoint is due only when this lags behind.
    var checkpointedIteration: UInt64?
    /// Held out of routing after a critical conflict until an operator releases it.
    var quarantined = false
    /// Failure detection, breaker and canary: updated in place per heartbeat, judged per tick.
    var health: AgentHealth

    mutating func accept(_ datagram: HeartbeatDatagram, at now: Instant, latencyMs: Double) {
        lastIteration = datagram.iteration
        reportedState = datagram.state
        progress = datagram.progress
        lastHeartbeat = now
        health.heartbeat(at: now, progress: datagram.progress)
        tracker.recordHeartbeat(at: now, oneWayLatencyMs: latencyMs, queueDepth: Int(datagram.queueDepth))
    }

    func state(at now: Instant, staleAfter: Duration) -> TrinaryState {
        TrinaryState.observed(reported: reportedState, lastHeartbeat: lastHeartbeat, now: now, staleAfter: staleAfter)
    }
}

/// The registration facts the registry keeps; the secret itself lives only in `tag`.
struct AgentRowSummary: Sendable {
    var id: AgentID
    var name: String
    var agentClass: AgentClass
    var capabilities: [String]
    var registeredAtMs: Int64

    init(_ row: AgentRow) {
        id = row.id
        name = row.name
        agentClass = row.agentClass
        capabilities = row.capabilities
        registeredAtMs = row.registeredAtMs
    }
}
