import Hummingbird
import PimeshAgent
import PimeshCore

extension APIRouter {
    /// docs/api.md "Incidents". Every operator command is audited (intent and outcome rows) and
    /// lands on the incident's timeline with the caller.
    static func addIncidentRoutes(to v1: RouterGroup<LeadRequestContext>, state: LeadState) {
        v1.get("incidents") { request, _ in
            await handle {
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
            await handle {
                let incidents = try engine(state)
                let csv = try await Blocking.run { try incidents.logCSV() }
                var headers = HTTPFields()
                headers[.contentType] = "text/csv; charset=utf-8"
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: csv)))
            }
        }
        v1.get("incidents/:id") { _, context in
            await handle {
                let (incidents, id) = try incident(state, context)
                guard let (found, _) = try await Blocking.run({ try incidents.incident(id) }) else { throw notFound(id) }
                return JSONResponse.make(status: .ok, found)
            }
        }
        v1.get("incidents/:id/postmortem") { _, context in
            await handle {
                let (incidents, id) = try incident(state, context)
                guard let (found, stored) = try await Blocking.run({ try incidents.incident(id) }) else { throw notFound(id) }
                var headers = HTTPFields()
                headers[.contentType] = "text/markdown; charset=utf-8"
                let text = stored ?? PostMortem.markdown(found, nodeID: incidents.nodeID)
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
            }
        }
        for verb in ["ack", "note", "resolve", "severity"] {
            v1.post("incidents/:id/\(verb)") { request, context in
                await handle {
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
                    default:
                        let reader = try BodyReader(body, allowed: ["severity"])
                        let text = try reader.string("severity", required: true, maxBytes: 8) ?? ""
                        guard let severity = Severity(name: text) else {
                            throw APIError.badRequest("\"severity\" must be SEV1, SEV2, SEV3 or SEV4, not \(text)", field: "severity")
                        }
                        command = .severity(severity)
                    }
                    let name = Incident.name(id)
                    let updated = try await audited(state, context, kind: "incident_\(verb)", subject: name) {
                        do {
                            return try incidents.run(command, on: id, by: context.caller.label)
                        } catch {
                            guard try incidents.incident(id) != nil else { throw notFound(id) }
                            throw APIError(status: .conflict, message: "incident \(id) is not open (resolved incidents are history)")
                        }
                    }
                    return JSONResponse.make(status: .ok, updated)
                }
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
