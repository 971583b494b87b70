import Glibc
import Logging
import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem
import Synchronization

/// The incident engine's shell (docs/incidents.md): feeds the core's triggers and book from the
/// health tick, task outcomes and health events; stores every change (incidents table) and
/// records it (audit log); writes the post-mortem and the incident-log row at resolution.
final class IncidentService: Sendable {
    struct Settings: Sendable {
        var book = IncidentBook.Settings()
        var triggers = IncidentTriggers.Settings()
        /// Where post-mortems and incident_log.csv go, besides the database.
        var directory: String
    }

    /// Health events that are the node acting on an agent: the first is an incident's first response.
    static let responseKinds: Set<String> = [
        "restart_scheduled", "restarted", "heal_command", "heal_command_finished", "orphans_migrated", "work_stolen",
        "awaiting_operator",
    ]
    /// Health events kept for an incident that opens just after them (its fault and detection).
    static let recentEventCapacity = 128
    static let detectionLookback: Int64 = 10_000

    let settings: Settings
    let triggers: IncidentTriggers
    let writer: StoreWriter
    let store: IncidentStore
    let audit: AuditLog?
    let nodeID: String
    let logger: Logger
    private let book: Mutex<IncidentBook>
    private let outcomes = Mutex(TaskOutcomeWindow())
    /// Integrity problems now, and those raised since the last observation: a store commit
    /// that failed once and was cleared by the next, 50 ms later, is still seen by the triggers.
    private let integrity = Mutex<(current: [String: String], unseen: [String: String])>(([:], [:]))
    /// `at`: when it happened on the monotonic clock, converted as it arrives, so that a later
    /// step of the wall clock neither hides nor invents a failure onset.
    private let recentEvents = Mutex<[(kind: String, agent: String, detail: String, atMs: Int64, at: Instant)]>([])
    private let resolvedTimes = Mutex<(count: Int, mitigateMs: Int64, resolveMs: Int64)>((0, 0, 0))
    /// Resource alarms seen at health ticks: root-cause evidence (`RootCause.Evidence`).
    private let alarms = Mutex<[(at: Instant, what: String)]>([])
    static let alarmCapacity = 64
    /// Told after each health tick of the open incidents and those just resolved: the playbooks.
    private let changed = Mutex<Callback<@Sendable (_ open: [Incident], _ resolved: [Incident]) -> Void>?>(nil)
    /// Resolved by an operator since the last health tick, which hands them on.
    private let resolvedByOperators = Mutex<[Incident]>([])
    /// Health event kinds that are an agent starting to fail (a root-cause onset).
    static let failureKinds: Set<String> = ["exited", "hung", "looping", "suspected", "start_failed"]

    private init(settings: Settings, book: IncidentBook, writer: StoreWriter, audit: AuditLog?, nodeID: String, logger: Logger) {
        self.settings = settings
        self.triggers = IncidentTriggers(settings: settings.triggers)
        self.book = Mutex(book)
        self.writer = writer
        self.store = IncidentStore(database: writer.database)
        self.audit = audit
        self.nodeID = nodeID
        self.logger = logger
    }

    /// Goes on with the incidents a previous lead left open. `restoreWallMs`: the wall clock as
    /// their stored times read it (Lead: without a step made while no lead ran).
    @_optimize(size)  // cold: once at start or an operator's query (the 25 MB budget)
    static func open(
        settings: Settings, writer: StoreWriter, audit: AuditLog?, nodeID: String, restoreWallMs: Int64 = Clock.wallMilliseconds(),
        logger: Logger
    ) throws -> IncidentService {
        let store = IncidentStore(database: writer.database)
        var stored: [Incident] = []
        for row in try store.open() {
            do {
                stored.append(try APICoding.decode(Incident.self, from: Array(row.body.utf8)))
            } catch {
                logger.error("incident \(row.id) in the store cannot be read; left as it is", metadata: ["error": "\(error)"])
            }
        }
        let book = IncidentBook(
            settings: settings.book, restoring: stored, nextID: try store.maxID() + 1, now: Clock.monotonicNow(), wallMs: restoreWallMs)
        if !stored.isEmpty { logger.notice("open incidents carried over", metadata: ["incidents": "\(stored.count)"]) }
        return IncidentService(settings: settings, book: book, writer: writer, audit: audit, nodeID: nodeID, logger: logger)
    }

    // MARK: - Inputs

    func recordOutcome(capability: String, agent: String, succeeded: Bool, error: String?) {
        let now = Clock.monotonicNow()
        outcomes.withLock { $0.record(capability: capability, agent: agent, succeeded: succeeded, error: error, at: now) }
    }

    /// A store, audit or snapshot integrity problem (`detail`), or its end (nil).
    func setIntegrity(_ what: String, failing detail: String?) {
        integrity.withLock { integrity in
            integrity.current[what] = detail
            if let detail { integrity.unseen[what] = detail }
        }
    }

    /// An integrity problem was raised since the last observation: the next health tick
    /// observes, quiet or not.
    var hasUnseenIntegrityFailure: Bool {
        integrity.withLock { !$0.unseen.isEmpty }
    }

    func noteEvent(kind: String, agent: String?, detail: String, atMs: Int64) {
        guard let agent else { return }
        let at = WallAge.instant(ofWallMs: atMs, nowWallMs: Clock.wallMilliseconds(), now: Clock.monotonicNow())
        recentEvents.withLock { events in
            events.append((kind, agent, detail, atMs, at))
            if events.count > Self.recentEventCapacity { events.removeFirst(events.count - Self.recentEventCapacity) }
        }
        let resolved = book.withLock { book in
            guard book.incidents.contains(where: { $0.agents.contains(agent) }) else { return [Incident]() }
            return record(book.noteAction(agent: agent, kind: kind, detail: detail, wallMs: atMs, isResponse: Self.responseKinds.contains(kind)))
        }
        writeFiles(resolved)
    }

    /// One health tick's worth of state.
    /// `observation` comes without outcomes and integrity failures: those are kept here.
    @_optimize(size)  // cold: a health tick with changes, else every few seconds (the 25 MB budget)
    func observe(_ partial: IncidentObservation, at now: Instant) {
        let wallMs = Clock.wallMilliseconds()
        var observation = partial
        observation.outcomes = outcomes.withLock { $0 }
        observation.integrityFailures = integrity.withLock { integrity in
            let seen = integrity.unseen.merging(integrity.current) { _, current in current }
            integrity.unseen = [:]
            return seen.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
        let agents = observation.agents
        noteAlarms(observation, at: now)
        let held = book.withLock { Set($0.incidents.filter { $0.state == .open }.flatMap(\.agents)) }
        observation.stillOut = Set(agents.filter { !$0.down && !$0.healthy && held.contains($0.name) }.map(\.name))
        let fired = triggers.evaluate(observation, at: now)
        let recent = recentEvents.withLock { $0 }
        let (resolved, resolvedByHand, open) = book.withLock { book in
            let recovering = Set(agents.filter { !$0.down && !$0.healthy }.map(\.name))
            var changes = book.observe(fired, recovering: recovering, declared: observation.declared, at: now, wallMs: wallMs)
            // What led to a new incident: the agents' events of the last few seconds.
            for change in changes where change.entry.kind == "opened" {
                for event in recent where change.incident.agents.contains(event.agent) && now - event.at <= .milliseconds(Self.detectionLookback) {
                    changes += book.noteAction(
                        agent: event.agent, kind: event.kind, detail: event.detail, wallMs: event.atMs,
                        isResponse: Self.responseKinds.contains(event.kind), only: change.incident.id)
                }
            }
            let resolvedByHand = resolvedByOperators.withLock { resolved in
                defer { resolved.removeAll() }
                return resolved
            }
            return (record(changes + book.tick(at: now, wallMs: wallMs)), resolvedByHand, book.incidents)
        }
        writeFiles(resolved)
        changed.withLock { $0 }?.call(open, resolved + resolvedByHand)
    }

    func onChange(_ body: @escaping @Sendable (_ open: [Incident], _ resolved: [Incident]) -> Void) {
        changed.withLock { $0 = Callback(body) }
    }

    private func noteAlarms(_ observation: IncidentObservation, at now: Instant) {
        var raised: [String] = []
        if let used = observation.agentsMemoryBytes, let budget = observation.ramBudgetBytes, used > budget { raised.append("ram_over_budget") }
        if let score = observation.nodeScore, score > 800 { raised.append("node_score_over_800") }
        guard !raised.isEmpty else { return }
        alarms.withLock { alarms in
            for what in raised where !alarms.contains(where: { $0.what == what && now - $0.at < RootCause.clusterGap }) {
                alarms.append((now, what))
            }
            if alarms.count > Self.alarmCapacity { alarms.removeFirst(alarms.count - Self.alarmCapacity) }
        }
    }

    var resourceAlarms: [(at: Instant, what: String)] {
        alarms.withLock { $0 }
    }

    /// When each of the incident's agents started failing, from the recent health events and
    /// task failures: the first onset per agent. `capabilities` is left for the caller.
    @_optimize(size)  // cold: an incident resolved (the 25 MB budget)
    func onsets(for incident: Incident, at now: Instant) -> [RootCause.Onset] {
        var first: [String: RootCause.Onset] = [:]
        let window = settings.triggers.massFailureSpan
        for event in recentEvents.withLock({ $0 }) where Self.failureKinds.contains(event.kind) && incident.agents.contains(event.agent) {
            let at = event.at
            guard now - at <= window, first[event.agent].map({ at < $0.at }) ?? true else { continue }
            first[event.agent] = RootCause.Onset(
                agent: event.agent, capabilities: [], at: at, signature: Self.signature(kind: event.kind, detail: event.detail),
                silentWhileRunning: event.kind == "hung" || event.kind == "suspected")
        }
        for failure in outcomes.withLock({ $0.failures(within: window, at: now) })
        where incident.agents.contains(failure.agent) || incident.capabilities.contains(failure.capability) {
            guard first[failure.agent].map({ failure.at < $0.at }) ?? true else { continue }
            first[failure.agent] = RootCause.Onset(
                agent: failure.agent, capabilities: [failure.capability], at: failure.at,
                signature: failure.text.isEmpty ? failure.pattern.rawValue : failure.text)
        }
        return first.values.sorted { $0.at < $1.at }
    }

    /// `alive → exited: pid 12 killed by signal 9 (KILL)` → `killed by signal 9 (KILL)`.
    static func signature(kind: String, detail: String) -> String {
        guard kind == "exited", let range = detail.firstRange(of: ": pid ") else { return kind }
        let rest = detail[range.upperBound...].drop { $0.isNumber }.drop { $0 == " " }
        return rest.isEmpty ? kind : String(rest.prefix(80))
    }

    // MARK: - Playbooks

    func playbookEntry(_ id: Int64, kind: String, detail: String, isResponse: Bool, record runRecord: PlaybookRunRecord? = nil) {
        let wallMs = Clock.wallMilliseconds()
        book.withLock { book in
            guard let change = try? book.playbook(id, kind: kind, detail: detail, isResponse: isResponse, record: runRecord, wallMs: wallMs) else { return }
            _ = record([change])
        }
    }

    func setRootCause(_ id: Int64, _ text: String) {
        let wallMs = Clock.wallMilliseconds()
        book.withLock { book in
            guard let change = try? book.setRootCause(id, text, by: "lead", wallMs: wallMs) else { return }
            _ = record([change])
        }
    }

    // MARK: - Operators

    enum Command {
        case acknowledge
        case note(String)
        case resolve(String)
        case severity(Severity)
        case rootCause(String)
    }

    @_optimize(size)  // cold: an operator's incident verb (the 25 MB budget)
    func run(_ command: Command, on id: Int64, by actor: String) throws(IncidentBook.NotFound) -> Incident {
        let now = Clock.monotonicNow()
        let wallMs = Clock.wallMilliseconds()
        let change = try book.withLock { book throws(IncidentBook.NotFound) in
            let change: IncidentBook.Change =
                switch command {
                case .acknowledge: try book.acknowledge(id, by: actor, at: now, wallMs: wallMs)
                case .note(let text): try book.note(id, text: text, by: actor, at: now, wallMs: wallMs)
                case .resolve(let reason): try book.resolve(id, by: actor, reason: reason, wallMs: wallMs)
                case .severity(let severity): try book.setSeverity(id, to: severity, by: actor, at: now, wallMs: wallMs)
                case .rootCause(let text): try book.setRootCause(id, text, by: actor, wallMs: wallMs)
                }
            _ = record([change])
            // The book holds open incidents only, so no health tick would report this one: the
            // next tick hands it on (to the coordinator, the playbooks), in its order of changes.
            if change.incident.state == .resolved { resolvedByOperators.withLock { $0.append(change.incident) } }
            return change
        }
        if change.incident.state == .resolved { writeFiles([change.incident]) }
        return change.incident
    }

    // MARK: - Reading

    var open: [Incident] {
        book.withLock { $0.incidents }
    }

    var suppressed: Int {
        book.withLock { $0.suppressed }
    }

    var highestOpenSeverity: Severity? {
        book.withLock { $0.highestOpenSeverity }
    }

    /// An open incident from the book, else a resolved one from the store.
    func incident(_ id: Int64) throws -> (Incident, postmortem: String?)? {
        if let open = book.withLock({ $0.incident(id) }) { return (open, nil) }
        guard let row = try store.row(id: id) else { return nil }
        return (try APICoding.decode(Incident.self, from: Array(row.body.utf8)), row.postmortem)
    }

    /// Newest first: the book's incidents as they are now, and resolved ones from the store. An
    /// open incident the store has not got (its write waits for room on a full disk) is listed
    /// all the same: that is when an operator looks.
    @_optimize(size)  // cold: an operator's listing (the 25 MB budget)
    func recent(limit: Int, beforeID: Int64) throws -> [Incident] {
        let openNow = book.withLock { $0.incidents }.filter { $0.id < beforeID }
        var listed: [Int64: Incident] = [:]
        for row in try store.recent(limit: limit, beforeID: beforeID) {
            listed[row.id] = openNow.first { $0.id == row.id } ?? (try? APICoding.decode(Incident.self, from: Array(row.body.utf8)))
        }
        for incident in openNow where listed[incident.id] == nil { listed[incident.id] = incident }
        return Array(listed.values.sorted { $0.id > $1.id }.prefix(limit))
    }

    func logCSV() throws -> String {
        ([PostMortem.csvHeader] + (try store.csvRows())).joined(separator: "\n") + "\n"
    }

    /// Mean milliseconds from detection to mitigation and to resolution, over the incidents
    /// this lead resolved.
    var meanTimes: (resolved: Int, mitigateMs: Double?, resolveMs: Double?) {
        resolvedTimes.withLock { times in
            guard times.count > 0 else { return (0, nil, nil) }
            return (times.count, Double(times.mitigateMs) / Double(times.count), Double(times.resolveMs) / Double(times.count))
        }
    }

    // MARK: - Carrying changes out

    /// Audit rows, log lines and store writes for `changes`, in their order. Called with the
    /// book's lock held, so that two threads' changes to one incident reach the store in the
    /// order the book made them (`enqueue` only appends to the writer's queue). Returns the
    /// incidents that were resolved, whose files are written after the lock is let go.
    @_optimize(size)  // cold: incidents change rarely (the 25 MB budget)
    private func record(_ changes: [IncidentBook.Change]) -> [Incident] {
        guard !changes.isEmpty else { return [] }
        var latest: [Int64: Incident] = [:]
        for change in changes {
            latest[change.incident.id] = change.incident
            let incident = change.incident
            let row = AuditEntry(
                actor: change.entry.actor, kind: "incident_" + change.entry.kind, subject: incident.name,
                body: AuditBody.canonical([
                    ("severity", "\(incident.severity)"), ("state", incident.state.rawValue), ("detail", change.entry.detail),
                ]))
            // The agents' condition changes in its timeline as the pace allows (one that flaps
            // adds to it every few seconds); everything else always.
            if change.entry.actor == "lead" && AuditPace.paces(kind: change.entry.kind) {
                audit?.recordPaced(row)
            } else {
                audit?.record(row)
            }
            logger.notice(
                "incident \(change.entry.kind)",
                metadata: [
                    "incident": "\(incident.name)", "severity": "\(incident.severity)",
                    // Notes and root causes are anyone's text: no forged lines or terminal escapes.
                    "detail": "\(PrintableText.of(change.entry.detail, limit: 1024))",
                ])
        }
        var resolved: [Incident] = []
        for incident in latest.values.sorted(by: { $0.id < $1.id }) {
            guard let body = try? APICoding.encode(incident) else { continue }
            let text = String(decoding: body, as: UTF8.self)
            writer.enqueue(key: "incident:\(incident.id)") { connection in
                try IncidentStore.save(
                    id: incident.id, state: incident.state, severity: incident.severity, openedMs: incident.openedMs,
                    resolvedMs: incident.resolvedMs, body: text, in: connection)
            }
            guard incident.state == .resolved else { continue }
            let markdown = PostMortem.markdown(incident, nodeID: nodeID)
            let row = PostMortem.csvRow(incident)
            writer.enqueue(key: "incident-write-up:\(incident.id)") { connection in try IncidentStore.saveWriteUp(id: incident.id, postmortem: markdown, csvRow: row, in: connection) }
            resolvedTimes.withLock { times in
                times.count += 1
                times.mitigateMs += (incident.mitigatedMs ?? incident.resolvedMs ?? incident.openedMs) - incident.openedMs
                times.resolveMs += (incident.resolvedMs ?? incident.openedMs) - incident.openedMs
            }
            resolved.append(incident)
        }
        return resolved
    }

    /// The post-mortem and the incident log in the data dir, for people: as many as the
    /// database keeps (`IncidentStore.keepResolved`), the log rewritten whole.
    @_optimize(size)  // cold: an incident resolved (the 25 MB budget)
    private func writeFiles(_ resolved: [Incident]) {
        guard !resolved.isEmpty else { return }
        do {
            try FileIO.makeDirectories(settings.directory, mode: 0o700)
            for incident in resolved {
                let markdown = PostMortem.markdown(incident, nodeID: nodeID)
                try FileIO.writeAtomically(path: settings.directory + "/\(incident.name).md", bytes: Array(markdown.utf8), mode: 0o600)
                FileIO.remove(settings.directory + "/\(Incident.name(incident.id - Int64(IncidentStore.keepResolved))).md")
            }
            // The new rows may not be committed yet: the stored ones, then the new, once each.
            var rows = (try? store.csvRows()) ?? []
            for row in resolved.map(PostMortem.csvRow) where !rows.contains(row) { rows.append(row) }
            let text = ([PostMortem.csvHeader] + rows.suffix(IncidentStore.keepResolved)).joined(separator: "\n") + "\n"
            try FileIO.writeAtomically(path: settings.directory + "/incident_log.csv", bytes: Array(text.utf8), mode: 0o600)
        } catch {
            logger.error("post-mortem not written to \(settings.directory) (it is in the database)", metadata: ["error": "\(error)"])
        }
    }
}
