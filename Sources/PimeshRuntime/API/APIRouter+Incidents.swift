import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshSystem

extension APIRouter {
    /// docs/api.md "Incidents". Every operator command is audited (intent and outcome rows) and
    /// lands on the incident's timeline with the caller.
    static func addIncidentRoutes(to v1: RouterGroup<LeadRequestContext>, state: LeadState) {
        v1.get("incidents") { request, _ in
            await APIError.answering {
                let incidents = try engine(state)
                let query = request.uri.queryParameters
                let limit = try queryInteger(query.get("limit"), name: "limit", in: 1...500) ?? 50
                let before = try queryInteger(query.get("before"), name: "before", in: 1...Int.max).map(Int64.init) ?? .max
                let page = try await Blocking.run { try incidents.recent(limit: limit + 1, beforeID: before) }
                var listed = Array(page.prefix(limit))
                for index in listed.indices { listed[index].timeline = [] }
                return JSONResponse.make(
                    status: .ok,
                    IncidentList(
                        incidents: listed, nextBefore: page.count > limit ? listed.last?.id : nil, open: incidents.open.count,
                        suppressed: incidents.suppressed))
            }
        }
        v1.get("incident-log") { _, _ in
            await APIError.answering {
                let incidents = try engine(state)
                let csv = try await Blocking.run { try incidents.logCSV() }
                var headers = HTTPFields()
                headers[.contentType] = "text/csv; charset=utf-8"
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: csv)))
            }
        }
        v1.get("incidents/:id") { _, context in
            await APIError.answering {
                let (incidents, id) = try incident(state, context)
                guard let (found, _) = try await Blocking.run({ try incidents.incident(id) }) else { throw notFound(id) }
                return JSONResponse.make(status: .ok, found)
            }
        }
        v1.get("incidents/:id/postmortem") { _, context in
            await APIError.answering {
                let (incidents, id) = try incident(state, context)
                guard let (found, stored) = try await Blocking.run({ try incidents.incident(id) }) else { throw notFound(id) }
                var headers = HTTPFields()
                headers[.contentType] = "text/markdown; charset=utf-8"
                let text = stored ?? PostMortem.markdown(found, nodeID: incidents.nodeID)
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
            }
        }
        // The audit kinds of the operators' requests, apart from the timeline's own rows
        // (`incident_note`, `incident_severity`, `incident_resolved`, …).
        let auditKinds = [
            "ack": "incident_ack", "note": "incident_add_note", "resolve": "incident_resolve", "severity": "incident_set_severity",
            "root-cause": "incident_set_root_cause",
        ]
        for verb in ["ack", "note", "resolve", "severity", "root-cause"] {
            v1.post("incidents/:id/\(verb)") { request, context in
                await APIError.answering {
                    let (incidents, id) = try incident(state, context)
                    let body = try await RequestBody.json(request, limit: 4096)
                    let command: IncidentService.Command
                    switch verb {
                    case "ack":
                        _ = try BodyReader(body, allowed: [])
                        command = .acknowledge
                    case "note":
                        let reader = try BodyReader(body, allowed: ["text"])
                        command = .note(try reader.string("text", required: true, maxBytes: 1024) ?? "")
                    case "resolve":
                        let reader = try BodyReader(body, allowed: ["reason"])
                        command = .resolve(try reader.string("reason", maxBytes: 1024) ?? "")
                    case "root-cause":
                        let reader = try BodyReader(body, allowed: ["text"])
                        command = .rootCause(try reader.string("text", required: true, maxBytes: 1024) ?? "")
                    default:
                        let reader = try BodyReader(body, allowed: ["severity"])
                        let text = try reader.string("severity", required: true, maxBytes: 8) ?? ""
                        guard let severity = Severity(name: text) else {
                            throw APIError.badRequest("\"severity\" must be SEV1, SEV2, SEV3 or SEV4, not \(text)", field: "severity")
                        }
                        command = .severity(severity)
                    }
                    let name = Incident.name(id)
                    let caller = context.caller.label
                    let updated = try await audited(state, context, kind: auditKinds[verb]!, subject: name) {
                        // A resolution writes its post-mortem (fsync) and a miss reads the store:
                        // neither on the cooperative pool.
                        try await Blocking.run { () throws -> Incident in
                            do {
                                return try incidents.run(command, on: id, by: caller)
                            } catch {
                                guard try incidents.incident(id) != nil else { throw notFound(id) }
                                throw APIError(status: .conflict, message: "incident \(id) is not open (resolved incidents are history)")
                            }
                        }
                    }
                    return JSONResponse.make(status: .ok, updated)
                }
            }
        }
    }

    /// docs/incidents.md "Drills": destructive on purpose, so the body must say `"confirm": true`.
    static func addDrillRoutes(to v1: RouterGroup<LeadRequestContext>, state: LeadState) {
        v1.post("drills/kill") { request, context in
            await APIError.answering {
                let body = try await RequestBody.json(request, limit: 8192)
                let reader = try BodyReader(body, allowed: ["count", "agents", "timeout_s", "confirm"])
                guard case .bool(true)? = reader.fields["confirm"] else {
                    throw APIError.badRequest("a drill kills agents: say \"confirm\": true", field: "confirm")
                }
                let count = try reader.integer("count", in: 1...1000)
                var names: [String] = []
                if let value = reader.fields["agents"] {
                    guard case .array(let items) = value, items.count <= 64 else {
                        throw APIError.badRequest("\"agents\" must be an array of at most 64 names", field: "agents")
                    }
                    for item in items {
                        guard case .string(let name) = item, !name.isEmpty, name.utf8.count <= 64 else {
                            throw APIError.badRequest("\"agents\" must hold agent names", field: "agents")
                        }
                        names.append(name)
                    }
                }
                guard count == nil || names.isEmpty else { throw APIError.badRequest("give \"count\" or \"agents\", not both", field: "count") }
                let timeout = Duration.seconds(try reader.integer("timeout_s", in: 1...600) ?? 120)
                guard let supervisor = state.supervisor else {
                    throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
                }
                let subject = names.isEmpty ? "\(count ?? 1) agent(s)" : names.joined(separator: ",")
                let result = try await audited(state, context, kind: "drill_kill", subject: subject) {
                    do {
                        return try await KillDrill(state: state, supervisor: supervisor).run(
                            count: count, names: names, timeout: timeout, seed: UInt64(bitPattern: Clock.wallMilliseconds()))
                    } catch let refused as KillDrill.Refused {
                        throw APIError(status: .conflict, message: refused.description)
                    }
                }
                state.audit?.record(
                    AuditEntry(
                        actor: context.caller.label, kind: "drill_result", subject: result.agents.joined(separator: ","),
                        body: AuditBody.canonical([
                            ("drill", "kill"), ("all_recovered_ms", result.allRecoveredMs.map(String.init) ?? "not recovered"),
                            ("mitigated_ms", result.mitigatedMs.map(String.init) ?? "none"), ("slo_ms", "\(result.sloMs)"),
                            ("met", result.met ? "yes" : "no"), ("incidents", result.incidents.joined(separator: ",")),
                        ])))
                return JSONResponse.make(status: .ok, result)
            }
        }
        for drill in ["hang", "corrupt-snapshot", "siege"] {
            v1.post("drills/\(drill)") { request, context in
                await APIError.answering {
                    let body = try await RequestBody.json(request, limit: 8192)
                    let allowed: [String] =
                        switch drill {
                        case "hang": ["confirm", "agent", "timeout_s"]
                        case "siege": ["confirm", "cpu", "memory_mb", "seconds", "timeout_s"]
                        default: ["confirm", "timeout_s"]
                        }
                    let reader = try BodyReader(body, allowed: allowed)
                    guard case .bool(true)? = reader.fields["confirm"] else {
                        throw APIError.badRequest("a drill hurts the node on purpose: say \"confirm\": true", field: "confirm")
                    }
                    let timeout = Duration.seconds(try reader.integer("timeout_s", in: 1...600) ?? 120)
                    var agent: String?
                    if let value = reader.fields["agent"] {
                        guard case .string(let name) = value, !name.isEmpty, name.utf8.count <= 64 else {
                            throw APIError.badRequest("\"agent\" must be an agent name", field: "agent")
                        }
                        agent = name
                    }
                    let cpu = try reader.integer("cpu", in: 0...64) ?? 1
                    let memoryMB = try reader.integer("memory_mb", in: 0...8192) ?? 0
                    let seconds = try reader.integer("seconds", in: 1...600) ?? 10
                    guard let supervisor = state.supervisor else {
                        throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
                    }
                    let faults = FaultDrill(state: state, supervisor: supervisor)
                    let report = try await audited(state, context, kind: "drill_" + drill.replacing("-", with: "_"), subject: agent ?? "node") {
                        do {
                            switch drill {
                            case "hang": return try await faults.hang(name: agent, timeout: timeout, seed: UInt64(bitPattern: Clock.wallMilliseconds()))
                            case "siege": return try await faults.siege(cpu: cpu, memoryMB: memoryMB, seconds: seconds, timeout: timeout)
                            default: return try await faults.corruptSnapshot(timeout: timeout)
                            }
                        } catch let refused as FaultDrill.Refused {
                            throw APIError(status: .conflict, message: refused.description)
                        }
                    }
                    state.audit?.record(
                        AuditEntry(
                            actor: context.caller.label, kind: "drill_result", subject: report.target,
                            body: AuditBody.canonical([
                                ("drill", drill), ("detected_ms", report.detectedMs.map(String.init) ?? "not seen"),
                                ("mitigated_ms", report.mitigatedMs.map(String.init) ?? "none"),
                                ("recovered_ms", report.recoveredMs.map(String.init) ?? "not recovered"), ("slo_ms", "\(report.sloMs)"),
                                ("met", report.met ? "yes" : "no"), ("incidents", report.incidents.joined(separator: ",")),
                            ])))
                    return JSONResponse.make(status: .ok, report)
                }
            }
        }
        v1.get("playbooks") { _, _ in
            await APIError.answering {
                guard let runner = state.playbooks else {
                    throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
                }
                let (playbooks, refused) = runner.playbooks
                return JSONResponse.make(status: .ok, PlaybookListing(playbooks: playbooks.map(PlaybookListing.Entry.init), refused: refused.map(\.description)))
            }
        }
    }

    private static func engine(_ state: LeadState) throws(APIError) -> IncidentService {
        guard let incidents = state.incidents else {
            throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
        }
        return incidents
    }

    private static func incident(_ state: LeadState, _ context: LeadRequestContext) throws(APIError) -> (IncidentService, Int64) {
        let incidents = try engine(state)
        let text = context.parameters.get("id") ?? ""
        let digits = text.hasPrefix("INC-") ? String(text.dropFirst(4)) : text
        guard let id = Int64(digits), id > 0 else {
            throw APIError.badRequest("\(text) is not an incident id (a number, or INC-000042)", field: "id")
        }
        return (incidents, id)
    }

    private static func notFound(_ id: Int64) -> APIError {
        APIError(status: .notFound, message: "no incident \(id)")
    }
}
