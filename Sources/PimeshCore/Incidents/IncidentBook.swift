/// The incidents that are not resolved yet, and the rules that move them: one incident per
/// cause (a trigger joins the open incident with its cause or one of its agents), severity that
/// only rises by itself, mitigation when no cause fires, resolution after a quiet observation
/// window with task success back at target, SLO breaches and escalation by elapsed time. Pure:
/// the shell feeds it triggers, actions and operators' commands, and stores what changed.
public struct IncidentBook: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Seed 003: no recurrence (and success ≥ 99 %) for this long resolves an incident.
        public var observationWindow = Duration.seconds(30 * 60)
        /// Open incidents at most; a cause that would open one more is counted, not opened.
        /// SEV1 and SEV2 causes have `reservedForSevere` more, so that many small incidents (64
        /// silent agents, say) never hide a severe one, and SEV1 causes `reservedForSEV1` more
        /// again: agents can raise SEV2s of their own (a critical conflict per answering agent),
        /// and enough of them must not keep a failing store or an uncovered capability unopened.
        public var maxOpen = 64
        public var reservedForSevere = 16
        public var reservedForSEV1 = 8
        /// Open incidents about agents no manifest names (they registered themselves with the
        /// join token) and raised by their own failures or conflicts, at most: whoever holds
        /// that token can make agents and fail them at will, and must not fill the book so that
        /// a manifest's agent, or the node itself, opens nothing.
        public var maxOpenForUndeclared = 16
        public var maxTimeline = 256
        public var maxAgents = 256
        public var maxCauses = 64

        public init() {}
    }

    /// What changed: the incident as it is now, and the timeline entry that says what.
    public struct Change: Sendable, Equatable {
        public var incident: Incident
        public var entry: IncidentTimelineEntry
    }

    public struct NotFound: Error, Equatable, CustomStringConvertible {
        public var id: Int64
        public var description: String { "no open incident \(id)" }
    }

    public let settings: Settings
    public private(set) var incidents: [Incident] = []
    public private(set) var nextID: Int64
    /// Causes that could not open an incident because the book was full, each counted once.
    public var suppressed: Int { suppressedCauses.count }
    private var suppressedCauses: Set<String> = []
    private var pendingSince: [String: Instant] = [:]
    private var taskFailuresActive = false

    public init(settings: Settings = Settings(), nextID: Int64 = 1) {
        self.settings = settings
        self.nextID = max(1, nextID)
    }

    /// Incidents a previous lead left open; their timers go on from the wall clock's account of
    /// how long ago they opened.
    public init(settings: Settings = Settings(), restoring stored: [Incident], nextID: Int64, now: Instant, wallMs: Int64) {
        self.init(settings: settings, nextID: nextID)
        func instant(_ ms: Int64) -> Instant { WallAge.instant(ofWallMs: ms, nowWallMs: wallMs, now: now) }
        incidents = stored.filter { $0.state != .resolved }.prefix(capacity(for: .sev1)).map { stored in
            var incident = stored
            incident.openedAt = instant(stored.openedMs)
            incident.lastUpdateAt = instant(stored.lastUpdateMs)
            incident.quietSince = stored.quietSinceMs.map(instant)
            return incident
        }
        self.nextID = max(nextID, (stored.map(\.id).max() ?? 0) + 1)
    }

    public func incident(_ id: Int64) -> Incident? {
        incidents.first { $0.id == id }
    }

    public var highestOpenSeverity: Severity? {
        incidents.map(\.severity).max()
    }

    // MARK: - Triggers

    /// `recovering`: agents that are neither down nor healthy yet (restarted, not heartbeating
    /// again); an incident holding one is not mitigated.
    /// `declared`: agents a manifest names; the others count against `Settings.maxOpenForUndeclared`
    /// (nil: every agent is declared).
    public mutating func observe(
        _ triggers: [IncidentTrigger], recovering: Set<String> = [], declared: Set<String>? = nil, at now: Instant, wallMs: Int64
    ) -> [Change] {
        var changes: [Change] = []
        let firing = Set(triggers.map(\.cause))
        pendingSince = pendingSince.filter { firing.contains($0.key) }
        let active = triggers.filter { trigger in
            guard trigger.sustain > .zero else { return true }
            let since = pendingSince[trigger.cause] ?? now
            pendingSince[trigger.cause] = since
            return now - since >= trigger.sustain
        }
        taskFailuresActive = active.contains { $0.cause == "task_failures" }
        var touched: Set<Int64> = []
        for trigger in active.sorted(by: { ($0.severity, $1.cause) > ($1.severity, $0.cause) }) {
            if let index = incidents.firstIndex(where: { matches($0, trigger, declared: declared) }) {
                touched.insert(incidents[index].id)
                join(&incidents[index], trigger, at: now, wallMs: wallMs, changes: &changes)
            } else if incidents.count < capacity(for: trigger.severity),
                !Self.raisedByUndeclared(trigger.kind, trigger.agents, declared: declared)
                    || incidents.count(where: { Self.raisedByUndeclared($0.kind, $0.agents, declared: declared) }) < settings.maxOpenForUndeclared
            {
                let incident = open(trigger, at: now, wallMs: wallMs)
                touched.insert(incident.id)
                incidents.append(incident)
                changes.append(Change(incident: incident, entry: incident.timeline[0]))
            } else if suppressedCauses.count < 4096 {
                suppressedCauses.insert(trigger.cause)
            }
        }
        for index in incidents.indices
        where incidents[index].state == .open && !touched.contains(incidents[index].id)
            && !incidents[index].agents.contains(where: recovering.contains)
        {
            incidents[index].state = .mitigated
            incidents[index].mitigatedMs = incidents[index].mitigatedMs ?? wallMs
            incidents[index].quietSince = now
            incidents[index].quietSinceMs = wallMs
            append(&incidents[index], IncidentTimelineEntry(atMs: wallMs, kind: "mitigated", detail: "no cause fires any more"), &changes)
        }
        return changes
    }

    /// Raised by agents' own failures or conflicts, none of them named by a manifest: also once
    /// they have left or departed, or leaving would free their share for the next ones.
    private static func raisedByUndeclared(_ kind: IncidentTrigger.Kind, _ agents: [String], declared: Set<String>?) -> Bool {
        guard let declared else { return false }
        switch kind {
        case .agentDown, .capabilityUncovered, .conflict: return !agents.isEmpty && !agents.contains(where: declared.contains)
        default: return false
        }
    }

    /// How many open incidents a cause of this severity may find and still open one.
    private func capacity(for severity: Severity) -> Int {
        settings.maxOpen + (severity >= .sev2 ? settings.reservedForSevere : 0) + (severity >= .sev1 ? settings.reservedForSEV1 : 0)
    }

    /// The same cause, or a shared agent; but a cause that names a manifest's agent never joins
    /// an incident that only agents no manifest names raised: a probe's fake agent's incident
    /// took in the node's degradation and with it every failing agent, and a manifest agent's
    /// failure then opened nothing of its own.
    private func matches(_ incident: Incident, _ trigger: IncidentTrigger, declared: Set<String>?) -> Bool {
        guard incident.causes.contains(trigger.cause) || trigger.agents.contains(where: { incident.agents.contains($0) }) else { return false }
        guard let declared, trigger.agents.contains(where: declared.contains) else { return true }
        return !Self.raisedByUndeclared(incident.kind, incident.agents, declared: declared)
    }

    private mutating func open(_ trigger: IncidentTrigger, at now: Instant, wallMs: Int64) -> Incident {
        defer { nextID += 1 }
        var incident = Incident(
            id: nextID, severity: trigger.severity, kind: trigger.kind, title: trigger.summary, causes: [trigger.cause],
            agents: Array(trigger.agents.prefix(settings.maxAgents)), capabilities: Array(trigger.capabilities.prefix(settings.maxAgents)),
            state: .open, openedMs: wallMs, lastUpdateMs: wallMs, escalation: 1, breaches: [], recurrences: 0,
            timeline: [IncidentTimelineEntry(atMs: wallMs, kind: "opened", detail: "\(trigger.severity): \(trigger.summary)")],
            timelineDropped: 0, playbookRuns: nil)
        incident.openedAt = now
        incident.lastUpdateAt = now
        incident.escalation = IncidentSLO.escalation(severity: trigger.severity, elapsed: .zero, mitigated: false)
        return incident
    }

    private func join(_ incident: inout Incident, _ trigger: IncidentTrigger, at now: Instant, wallMs: Int64, changes: inout [Change]) {
        if incident.state == .mitigated {
            incident.state = .open
            incident.recurrences += 1
            incident.quietSince = nil
            incident.quietSinceMs = nil
            append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "recurred", detail: trigger.summary), &changes)
        }
        if !incident.causes.contains(trigger.cause) && incident.causes.count < settings.maxCauses {
            incident.causes.append(trigger.cause)
            append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "joined", detail: "\(trigger.severity): \(trigger.summary)"), &changes)
        }
        for agent in trigger.agents where !incident.agents.contains(agent) && incident.agents.count < settings.maxAgents {
            incident.agents.append(agent)
        }
        for capability in trigger.capabilities where !incident.capabilities.contains(capability) && incident.capabilities.count < settings.maxAgents {
            incident.capabilities.append(capability)
        }
        if trigger.severity > max(incident.severity, incident.severityBeforeOperator ?? incident.severity) {
            let from = incident.severity
            incident.severity = trigger.severity
            // The worst cause names the incident.
            incident.kind = trigger.kind
            incident.title = trigger.summary
            append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "severity", detail: "\(from) → \(trigger.severity): \(trigger.summary)"), &changes)
        }
    }

    private func append(_ incident: inout Incident, _ entry: IncidentTimelineEntry, _ changes: inout [Change]) {
        Self.append(&incident, entry, &changes, limit: settings.maxTimeline)
    }

    private static func append(_ incident: inout Incident, _ entry: IncidentTimelineEntry, _ changes: inout [Change], limit: Int) {
        if incident.timeline.count >= limit {
            incident.timeline.remove(at: 1)
            incident.timelineDropped += 1
        }
        incident.timeline.append(entry)
        changes.append(Change(incident: incident, entry: entry))
    }

    // MARK: - Time

    /// SLO breaches, escalation, and resolution of incidents that stayed quiet long enough.
    /// Resolved incidents leave the book; their last change carries them.
    public mutating func tick(at now: Instant, wallMs: Int64) -> [Change] {
        var changes: [Change] = []
        for index in incidents.indices {
            var incident = incidents[index]
            let elapsed = now - incident.openedAt
            for timer in IncidentSLO.timers(severity: incident.severity, kind: incident.kind)
            where timer.milestone != .resolved || incident.state != .resolved {
                guard !incident.reached(timer.milestone), elapsed > timer.within, !incident.breaches.contains(timer.name) else { continue }
                incident.breaches.append(timer.name)
                append(
                    &incident,
                    IncidentTimelineEntry(
                        atMs: wallMs, kind: "breach", detail: "\(timer.name): not \(timer.milestone.rawValue) within \(Self.text(timer.within))"),
                    &changes)
            }
            if let every = IncidentSLO.updateEvery(incident.severity), !incident.updateOverdue, now - incident.lastUpdateAt > every {
                incident.updateOverdue = true
                if !incident.breaches.contains("status_update") { incident.breaches.append("status_update") }
                append(
                    &incident, IncidentTimelineEntry(atMs: wallMs, kind: "breach", detail: "status_update: none for \(Self.text(every))"),
                    &changes)
            }
            let level = IncidentSLO.escalation(severity: incident.severity, elapsed: elapsed, mitigated: incident.state == .mitigated)
            if level > incident.escalation {
                incident.escalation = level
                append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "escalated", detail: "E\(level) after \(Self.text(elapsed))"), &changes)
            }
            if incident.state == .mitigated, taskFailuresActive {
                // Seed 003: success must hold at target through the whole window.
                incident.quietSince = now
                incident.quietSinceMs = wallMs
            }
            if incident.state == .mitigated, let quiet = incident.quietSince, now - quiet >= settings.observationWindow {
                incident.state = .resolved
                incident.resolvedMs = wallMs
                incident.resolvedBy = "lead"
                append(
                    &incident,
                    IncidentTimelineEntry(
                        atMs: wallMs, kind: "resolved", detail: "no recurrence and task success at target for \(Self.text(settings.observationWindow))"),
                    &changes)
            }
            incidents[index] = incident
        }
        incidents.removeAll { $0.state == .resolved }
        return changes
    }

    // MARK: - What the lead and operators do

    /// What happened to an incident's agent: an action the node took (`isResponse`: the first
    /// is the first response) or what detection saw. `only` limits it to one incident.
    public mutating func noteAction(
        agent: String, kind: String, detail: String, actor: String = "lead", wallMs: Int64, isResponse: Bool = true, only: Int64? = nil
    ) -> [Change] {
        var changes: [Change] = []
        for index in incidents.indices where incidents[index].agents.contains(agent) && (only == nil || incidents[index].id == only) {
            // The node often acts before the tick that opens the incident (an immediate restart):
            // that action is the response, credited at the opening.
            if isResponse && incidents[index].firstResponseMs == nil {
                incidents[index].firstResponseMs = max(wallMs, incidents[index].openedMs)
            }
            append(&incidents[index], IncidentTimelineEntry(atMs: wallMs, kind: kind, detail: detail, actor: actor), &changes)
        }
        return changes
    }

    public mutating func acknowledge(_ id: Int64, by actor: String, at now: Instant, wallMs: Int64) throws(NotFound) -> Change {
        try change(id) { [limit = settings.maxTimeline] incident, changes in
            guard incident.acknowledgedMs == nil else {
                return Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "note", detail: "acknowledged again", actor: actor), &changes, limit: limit)
            }
            incident.acknowledgedMs = wallMs
            incident.acknowledgedBy = actor
            Self.update(&incident, now: now, wallMs: wallMs)
            Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "acknowledged", detail: "by \(actor)", actor: actor), &changes, limit: limit)
        }
    }

    /// A status update from an operator.
    public mutating func note(_ id: Int64, text: String, by actor: String, at now: Instant, wallMs: Int64) throws(NotFound) -> Change {
        try change(id) { [limit = settings.maxTimeline] incident, changes in
            Self.update(&incident, now: now, wallMs: wallMs)
            Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "note", detail: text, actor: actor), &changes, limit: limit)
        }
    }

    /// Lowering a severity is an operator's call; so is raising it early.
    public mutating func setSeverity(_ id: Int64, to severity: Severity, by actor: String, at now: Instant, wallMs: Int64) throws(NotFound) -> Change {
        try change(id) { [limit = settings.maxTimeline] incident, changes in
            let from = incident.severity
            incident.severityBeforeOperator = max(incident.severityBeforeOperator ?? from, from)
            incident.severity = severity
            Self.update(&incident, now: now, wallMs: wallMs)
            Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "severity", detail: "\(from) → \(severity) by \(actor)", actor: actor), &changes, limit: limit)
        }
    }

    public mutating func setRootCause(_ id: Int64, _ cause: String, by actor: String = "lead", wallMs: Int64) throws(NotFound) -> Change {
        try change(id) { [limit = settings.maxTimeline] incident, changes in
            incident.rootCause = cause
            incident.rootCauseMs = incident.rootCauseMs ?? wallMs
            Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "root_cause", detail: cause, actor: actor), &changes, limit: limit)
        }
    }

    /// A playbook's step or its finished run: a timeline entry (the first action the node takes
    /// is the first response) and, at the end, seed 002's record of the run.
    public mutating func playbook(
        _ id: Int64, kind: String, detail: String, isResponse: Bool, record: PlaybookRunRecord? = nil, wallMs: Int64
    ) throws(NotFound) -> Change {
        try change(id) { [limit = settings.maxTimeline] incident, changes in
            if isResponse && incident.firstResponseMs == nil { incident.firstResponseMs = max(wallMs, incident.openedMs) }
            if let record {
                var runs = incident.playbookRuns ?? []
                if runs.count >= Incident.maxPlaybookRuns { runs.removeFirst() }
                runs.append(record)
                incident.playbookRuns = runs
            }
            Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: kind, detail: detail), &changes, limit: limit)
        }
    }

    /// Resolved by hand: the incident leaves the book (a cause still firing opens a new one).
    public mutating func resolve(_ id: Int64, by actor: String, reason: String, wallMs: Int64) throws(NotFound) -> Change {
        let change = try change(id) { [limit = settings.maxTimeline] incident, changes in
            incident.state = .resolved
            incident.resolvedMs = wallMs
            incident.resolvedBy = actor
            incident.mitigatedMs = incident.mitigatedMs ?? wallMs
            Self.append(&incident, IncidentTimelineEntry(atMs: wallMs, kind: "resolved", detail: reason.isEmpty ? "by \(actor)" : "by \(actor): \(reason)", actor: actor), &changes, limit: limit)
        }
        incidents.removeAll { $0.id == id }
        return change
    }

    private static func update(_ incident: inout Incident, now: Instant, wallMs: Int64) {
        incident.lastUpdateAt = now
        incident.lastUpdateMs = wallMs
        incident.updateOverdue = false
    }

    private mutating func change(_ id: Int64, _ body: (inout Incident, inout [Change]) -> Void) throws(NotFound) -> Change {
        guard let index = incidents.firstIndex(where: { $0.id == id }) else { throw NotFound(id: id) }
        var changes: [Change] = []
        body(&incidents[index], &changes)
        return changes.last ?? Change(incident: incidents[index], entry: incidents[index].timeline.last!)
    }

    /// `90 s`, `15 min`, `2 h 5 min`: how the timeline says durations.
    static func text(_ duration: Duration) -> String {
        let seconds = Int64(duration.milliseconds / 1000)
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        let minutes = seconds / 60 % 60
        return "\(seconds / 3600) h" + (minutes > 0 ? " \(minutes) min" : "")
    }
}
