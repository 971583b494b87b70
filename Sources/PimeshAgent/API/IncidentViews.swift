import PimeshCore

/// `GET /v1/incidents`: newest first, without timelines (`GET /v1/incidents/{id}` has it).
public struct IncidentList: Codable, Sendable {
    public var incidents: [Incident]
    /// Pass as `before` for the next page; nil when there is none.
    public var nextBefore: Int64?
    public var open: Int
    /// Causes that found `IncidentBook.Settings.maxOpen` incidents open and opened none.
    public var suppressed: Int

    public init(incidents: [Incident], nextBefore: Int64?, open: Int, suppressed: Int) {
        self.incidents = incidents
        self.nextBefore = nextBefore
        self.open = open
        self.suppressed = suppressed
    }
}

/// The open incidents in `pimesh status`.
public struct IncidentSummary: Codable, Sendable, Equatable {
    public var open: Int
    public var highestSeverity: Severity?
    /// Open incidents per severity, `"SEV1"`…`"SEV4"`.
    public var openBySeverity: [String: Int]
    /// The 20 worst open incidents, worst and newest first.
    public var incidents: [Brief]
    public var resolvedByThisLead: Int
    public var meanMitigateMs: Double?
    public var meanResolveMs: Double?

    public struct Brief: Codable, Sendable, Equatable {
        public var id: Int64
        public var name: String
        public var severity: Severity
        public var state: IncidentState
        public var title: String
        public var openedMs: Int64
        public var acknowledged: Bool
        public var breaches: [String]

        public init(_ incident: Incident) {
            id = incident.id
            name = incident.name
            severity = incident.severity
            state = incident.state
            title = incident.title
            openedMs = incident.openedMs
            acknowledged = incident.acknowledgedMs != nil
            breaches = incident.breaches
        }
    }

    public init(open: [Incident], resolvedByThisLead: Int, meanMitigateMs: Double?, meanResolveMs: Double?) {
        self.open = open.count
        highestSeverity = open.map(\.severity).max()
        openBySeverity = Dictionary(grouping: open, by: { "\($0.severity)" }).mapValues(\.count)
        incidents = open.sorted { ($0.severity, $1.id) > ($1.severity, $0.id) }.prefix(20).map(Brief.init)
        self.resolvedByThisLead = resolvedByThisLead
        self.meanMitigateMs = meanMitigateMs
        self.meanResolveMs = meanResolveMs
    }
}
