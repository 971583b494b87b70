/// One line of an incident's timeline: what happened, when (UTC on the wall clock, for people),
/// and who did it.
public struct IncidentTimelineEntry: Codable, Sendable, Equatable {
    public var atMs: Int64
    public var kind: String
    public var detail: String
    public var actor: String

    public init(atMs: Int64, kind: String, detail: String, actor: String = "lead") {
        self.atMs = atMs
        self.kind = kind
        self.detail = detail
        self.actor = actor
    }
}

/// An incident as it is stored, shown and written up. Wall-clock times are for people; the
/// timers run on the monotonic instants, which are not stored: a lead that starts again
/// re-derives them from the wall clock (`IncidentBook.init(restoring:)`).
public struct Incident: Codable, Sendable, Equatable {
    public var id: Int64
    public var severity: Severity
    public var kind: IncidentTrigger.Kind
    public var title: String
    public var causes: [String]
    public var agents: [String]
    public var capabilities: [String]
    public var state: IncidentState
    public var openedMs: Int64
    public var acknowledgedMs: Int64?
    public var acknowledgedBy: String?
    public var firstResponseMs: Int64?
    public var rootCause: String?
    public var rootCauseMs: Int64?
    public var mitigatedMs: Int64?
    public var resolvedMs: Int64?
    public var resolvedBy: String?
    public var lastUpdateMs: Int64
    public var quietSinceMs: Int64?
    /// The people's escalation level reached, 1–4 (E1–E4).
    public var escalation: Int
    /// SLO timers missed, by name (docs/incidents.md).
    public var breaches: [String]
    public var recurrences: Int
    /// When an operator set the severity: what the triggers had made it. Only a trigger worse
    /// than that raises it again (the operator judged what was already known).
    public var severityBeforeOperator: Severity?
    public var timeline: [IncidentTimelineEntry]
    /// Entries dropped from the middle of a long timeline (the first one always stays).
    public var timelineDropped: Int
    /// Seed 002's execution log of each playbook run, newest last (at most `maxPlaybookRuns`).
    public var playbookRuns: [PlaybookRunRecord]?
    public static let maxPlaybookRuns = 16

    /// When it opened on the lead's monotonic clock: what its timers and age run on.
    public internal(set) var openedAt = Instant(nanoseconds: 0)
    var lastUpdateAt = Instant(nanoseconds: 0)
    var quietSince: Instant?
    var updateOverdue = false

    enum CodingKeys: String, CodingKey {
        case id, severity, kind, title, causes, agents, capabilities, state
        case openedMs, acknowledgedMs, acknowledgedBy, firstResponseMs, rootCause, rootCauseMs, mitigatedMs, resolvedMs, resolvedBy
        case lastUpdateMs, quietSinceMs, escalation, breaches, recurrences, severityBeforeOperator, timeline, timelineDropped, updateOverdue
        case playbookRuns
    }

    /// `INC-000042`, as seed 003's incident log names them.
    public var name: String { Self.name(id) }

    public static func name(_ id: Int64) -> String {
        let digits = String(id)
        return "INC-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }

    /// Milliseconds from detection to `ms`, for the response table.
    public func since(_ ms: Int64?) -> Int64? {
        ms.map { $0 - openedMs }
    }

    public func reached(_ milestone: IncidentSLO.Milestone) -> Bool {
        switch milestone {
        case .acknowledged: acknowledgedMs != nil
        case .firstResponse: firstResponseMs != nil
        case .rootCause: rootCauseMs != nil
        case .mitigated: mitigatedMs != nil
        case .resolved: state == .resolved
        }
    }
}
