/// The write-up at resolution: seed 004's post-mortem template filled from the timeline, as a
/// draft for people to finish, and seed 003's incident-log row.
public enum PostMortem {
    @_optimize(size)  // cold: an incident resolved (the 25 MB budget)
    public static func markdown(_ incident: Incident, nodeID: String) -> String {
        let opened = UTCTime.iso8601(epochMs: incident.openedMs)
        let end = incident.resolvedMs ?? incident.timeline.last?.atMs ?? incident.openedMs
        let duration = IncidentBook.text(.milliseconds(Double(elapsed(incident, end))))
        var text = """
            # Post-Mortem: \(incident.name) — \(incident.title)

            **Date**: \(opened.prefix(10))
            **Node**: \(nodeID)
            **Authors**: pimesh (draft; the operator who resolves it finishes it)
            **Status**: Draft
            **Severity**: \(incident.severity)

            ---

            ## Executive Summary

            \(incident.severity) \(incident.kind.rawValue) on node \(nodeID): \(incident.title). Detected at \(opened), \
            \(incident.mitigatedMs.map { "mitigated after " + ms(elapsed(incident, $0)) } ?? "never mitigated"), \
            resolved after \(duration)\(incident.resolvedBy.map { " by " + $0 } ?? "").

            ## Impact

            - **Duration**: \(duration) (\(time(incident.openedMs)) UTC to \(time(end)) UTC)
            - **Agents affected**: \(incident.agents.isEmpty ? "none named" : "\(incident.agents.count): " + incident.agents.prefix(20).joined(separator: ", ") + (incident.agents.count > 20 ? ", …" : ""))
            - **Capabilities affected**: \(incident.capabilities.isEmpty ? "none named" : incident.capabilities.joined(separator: ", "))
            - **Causes**: \(incident.causes.joined(separator: ", "))
            - **Recurrences**: \(incident.recurrences)

            ## Timeline (all times UTC)

            | Time | Event | By |
            |------|-------|----|

            """
        for entry in ordered(incident.timeline) {
            text += "| \(UTCTime.iso8601(epochMs: entry.atMs, milliseconds: true)) | \(entry.kind): \(cell(entry.detail)) | \(cell(entry.actor)) |\n"
        }
        if incident.timelineDropped > 0 { text += "| | \(incident.timelineDropped) entries dropped from the middle | |\n" }
        text += """

            ## Response against targets

            | Target | Within | Reached after | Met |
            |--------|--------|---------------|-----|

            """
        for row in targets(incident) {
            text += "| \(row.name) | \(row.within) | \(row.after) | \(row.met) |\n"
        }
        text += """

            Escalation level reached: E\(incident.escalation).\(incident.breaches.isEmpty ? "" : " Targets missed: " + incident.breaches.joined(separator: ", ") + ".")

            ## Playbooks run

            \(playbookRuns(incident))

            ## Root Cause

            \(incident.rootCause ?? "Not identified by the node. Investigate and write it here.")

            ## What went well?

            \(wentWell(incident))

            ## What went badly?

            \(wentBadly(incident))

            ## Where did we get lucky?

            _For the people who were there to fill in._

            ## Action Items

            | Action | Owner | Priority | Due Date | Status |
            |--------|-------|----------|----------|--------|
            | Confirm or correct the root cause above | | P1 | | Not Started |

            ---

            _Blameless: this review is about the system, not about people._

            """
        return text
    }

    /// Seed 002's execution log, one line per run.
    static func playbookRuns(_ incident: Incident) -> String {
        let runs = incident.playbookRuns ?? []
        guard !runs.isEmpty else { return "None ran." }
        return runs.map { "- " + $0.summary }.joined(separator: "\n")
    }

    /// Each SLO timer of the incident: its target, when it was reached, whether in time.
    public static func targets(_ incident: Incident) -> [(name: String, within: String, after: String, met: String)] {
        IncidentSLO.timers(severity: incident.severity, kind: incident.kind).map { timer in
            let reachedMs: Int64? =
                switch timer.milestone {
                case .acknowledged: incident.acknowledgedMs
                case .firstResponse: incident.firstResponseMs
                case .rootCause: incident.rootCauseMs
                case .mitigated: incident.mitigatedMs
                case .resolved: incident.resolvedMs
                }
            // The breaches, timed on the monotonic clock, decide: wall-clock times may straddle a step.
            let missed = incident.breaches.contains(timer.name)
            let met = reachedMs.map { _ in missed ? "no" : "yes" } ?? (missed || incident.state == .resolved ? "no" : "pending")
            return (timer.name, IncidentBook.text(timer.within), reachedMs.map { ms(elapsed(incident, $0)) } ?? "not reached", met)
        }
    }

    /// By time, entries with one time in the order they were added (the fault and its
    /// detection are added just after the incident opens, with their own earlier times).
    public static func ordered(_ timeline: [IncidentTimelineEntry]) -> [IncidentTimelineEntry] {
        timeline.enumerated().sorted { ($0.element.atMs, $0.offset) < ($1.element.atMs, $1.offset) }.map(\.element)
    }

    /// Seed 003's incident log: `Date,Incident ID,Severity,Type,Affected Repos,Duration (min),
    /// Root Cause,Resolution,Rollback?` with agents in place of repos.
    public static let csvHeader = "Date,Incident ID,Severity,Type,Affected Agents,Duration (min),Root Cause,Resolution,Rollback?"

    public static func csvRow(_ incident: Incident) -> String {
        let end = incident.resolvedMs ?? incident.openedMs
        let minutes = Double(elapsed(incident, end)) / 60_000
        let tenths = Int((minutes * 10).rounded())
        let rollback = incident.timeline.contains { $0.kind == "rollback" } ? "Yes" : "No"
        let resolution = incident.timeline.last { $0.kind == "resolved" }?.detail ?? ""
        return [
            String(UTCTime.iso8601(epochMs: incident.openedMs).prefix(10)), incident.name, "\(incident.severity)", incident.kind.rawValue,
            "\(incident.agents.count)", "\(tenths / 10).\(tenths % 10)", incident.rootCause ?? "unknown", resolution, rollback,
        ].map(csvField).joined(separator: ",")
    }

    static func csvField(_ value: String) -> String {
        // A spreadsheet runs a cell that starts like a formula: root causes and resolutions are
        // anyone's text (OWASP's CSV injection), so such a cell starts with a quote mark instead.
        let value = value.unicodeScalars.first.map { "=+-@\t\r".unicodeScalars.contains($0) } == true ? "'" + value : value
        guard value.unicodeScalars.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingAll("\"", with: "\"\"") + "\""
    }

    static func cell(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : $0 })).replacingAll("|", with: "\\|")
    }

    /// From the incident's opening to `ms`, never negative: the wall clock may have stepped
    /// back in between (a Pi's NTP correction), which made durations read "-17912 s".
    static func elapsed(_ incident: Incident, _ ms: Int64) -> Int64 {
        max(0, ms.saturatingSubtract(incident.openedMs))
    }

    static func ms(_ value: Int64) -> String {
        value < 10_000 ? "\(value) ms" : IncidentBook.text(.milliseconds(Double(value)))
    }

    static func time(_ epochMs: Int64) -> String {
        String(UTCTime.iso8601(epochMs: epochMs).dropFirst(11).prefix(8))
    }

    static func wentWell(_ incident: Incident) -> String {
        var lines: [String] = []
        if let response = incident.firstResponseMs { lines.append("- The node responded \(ms(elapsed(incident, response))) after detection.") }
        if let mitigated = incident.mitigatedMs { lines.append("- Service was restored (no cause firing) \(ms(elapsed(incident, mitigated))) after detection.") }
        return lines.isEmpty ? "_Nothing the node can tell._" : lines.joined(separator: "\n")
    }

    static func wentBadly(_ incident: Incident) -> String {
        var lines: [String] = incident.breaches.map { "- Target missed: \($0)." }
        if incident.recurrences > 0 { lines.append("- It came back \(incident.recurrences) time(s) before it stayed quiet.") }
        return lines.isEmpty ? "_Every target was met._" : lines.joined(separator: "\n")
    }
}

extension String {
    /// Foundation-free replacement (the core imports nothing).
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
