import PimeshAgent
import PimeshCore
import PimeshStore

/// A registered agent's hot state in RAM; nothing here is written per heartbeat.
///
/// Copy-on-write over one heap object. Reading an agent out of the registry's dictionary
/// copies it; held by value that copied every field and retained every array it holds, which
/// at 1,000 agents was most of the heartbeat path's and the health tick's time (issue 14), and
/// each of the dictionary's spare slots held the whole state. Now a copy is one reference, and
/// a change to a copy that is not the only one copies the fields first.
struct LiveAgent: @unchecked Sendable {
    // @unchecked: `Fields` is only changed through `unique()`, that is when no other copy
    // (such as one a status view reads outside the registry's lock) refers to it.
    private final class Fields {
        var row: AgentRowSummary
        let tag: HeartbeatTag
        var tracker: ImpedanceTracker
        var lastIteration: UInt64?
        var reportedState: TrinaryState = .transit
        var progress: UInt64 = 0
        var lastHeartbeat: Instant?
        var checkpointedIteration: UInt64?
        /// Heartbeats stamped before this were sent to a floor since lowered: stale.
        var notBeforeWallMs: Int64 = .min
        var quarantined = false
        var health: AgentHealth

        init(row: AgentRowSummary, tag: HeartbeatTag, tracker: ImpedanceTracker, lastIteration: UInt64?, checkpointedIteration: UInt64?, health: AgentHealth) {
            self.row = row
            self.tag = tag
            self.tracker = tracker
            self.lastIteration = lastIteration
            self.checkpointedIteration = checkpointedIteration
            self.health = health
        }

        func state(at now: Instant, staleAfter: Duration) -> TrinaryState {
            TrinaryState.observed(reported: reportedState, lastHeartbeat: lastHeartbeat, now: now, staleAfter: staleAfter)
        }

        func copy() -> Fields {
            let copy = Fields(
                row: row, tag: tag, tracker: tracker, lastIteration: lastIteration, checkpointedIteration: checkpointedIteration, health: health)
            copy.reportedState = reportedState
            copy.progress = progress
            copy.lastHeartbeat = lastHeartbeat
            copy.quarantined = quarantined
            copy.notBeforeWallMs = notBeforeWallMs
            return copy
        }
    }

    private var fields: Fields

    init(row: AgentRowSummary, tag: HeartbeatTag, tracker: ImpedanceTracker, lastIteration: UInt64?, checkpointedIteration: UInt64?, health: AgentHealth) {
        fields = Fields(
            row: row, tag: tag, tracker: tracker, lastIteration: lastIteration, checkpointedIteration: checkpointedIteration, health: health)
    }

    private mutating func unique() -> Fields {
        if !isKnownUniquelyReferenced(&fields) { fields = fields.copy() }
        return fields
    }

    // `_read` lends the stored value; a `get` copied it, and a copied AgentHealth retains what
    // its detectors hold: three such copies per agent per health tick were a tenth of the
    // lead's time at 1,000 agents (perf, issue 14).
    var row: AgentRowSummary {
        _read { yield fields.row }
        _modify { yield &unique().row }
    }
    var tag: HeartbeatTag { fields.tag }
    var tracker: ImpedanceTracker {
        _read { yield fields.tracker }
        _modify { yield &unique().tracker }
    }
    var lastIteration: UInt64? { fields.lastIteration }
    var notBeforeWallMs: Int64 { fields.notBeforeWallMs }
    var reportedState: TrinaryState { fields.reportedState }
    var progress: UInt64 { fields.progress }
    var lastHeartbeat: Instant? { fields.lastHeartbeat }
    /// The iteration in the last checkpoint; a checkpoint is due only when this lags behind.
    var checkpointedIteration: UInt64? {
        get { fields.checkpointedIteration }
        set { unique().checkpointedIteration = newValue }
    }
    /// Held out of routing after a critical conflict until an operator releases it.
    var quarantined: Bool {
        get { fields.quarantined }
        set { unique().quarantined = newValue }
    }
    /// Failure detection, breaker and canary: updated in place per heartbeat, judged per tick.
    var health: AgentHealth {
        _read { yield fields.health }
        _modify { yield &unique().health }
    }

    /// What the health tick and the incident triggers count an agent as, at `now`. Mutating
    /// only to lend the health in place: a method called on a read of it copies it first, and
    /// the copy retains what its detectors hold (perf: per agent per tick, issue 14).
    mutating func judgement(at now: Instant, expected: Bool, staleAfter: Duration) -> AgentHealth.Judgement {
        let reporting = state(at: now, staleAfter: staleAfter)
        return Self.judge(&health, at: now, expected: expected, reporting: reporting)
    }

    private static func judge(_ health: inout AgentHealth, at now: Instant, expected: Bool, reporting: TrinaryState) -> AgentHealth.Judgement {
        health.judgement(at: now, expected: expected, reporting: reporting)
    }

    /// A lowered floor would take the datagrams sent above it for new ones: those stamped
    /// before `nowWallMs` (queued for the lead, or captured) are stale from now on.
    mutating func lowerIterationFloor(to iteration: UInt64, at nowWallMs: Int64) {
        let fields = unique()
        fields.lastIteration = iteration
        fields.notBeforeWallMs = nowWallMs
    }

    mutating func accept(_ datagram: HeartbeatDatagram, at now: Instant, latencyMs: Double) {
        let fields = unique()
        fields.lastIteration = datagram.iteration
        fields.reportedState = datagram.state
        fields.progress = datagram.progress
        fields.lastHeartbeat = now
        fields.health.heartbeat(at: now, progress: datagram.progress)
        fields.tracker.recordHeartbeat(at: now, oneWayLatencyMs: latencyMs, queueDepth: Int(datagram.queueDepth))
    }

    func state(at now: Instant, staleAfter: Duration) -> TrinaryState {
        fields.state(at: now, staleAfter: staleAfter)
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
