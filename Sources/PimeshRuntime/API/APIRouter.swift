import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshStore

/// The lead's local HTTP API (docs/api.md). Handlers parse, call the registry or the store,
/// and encode; nothing here owns a rule.
enum APIRouter {
    /// Registration bodies are a few hundred bytes; anything near this is not a registration.
    static let maxBodyBytes = 64 * 1024

    static func build(state: LeadState, token: String) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.get("/healthz") { _, _ in
            JSONResponse.make(status: .ok, ["status": "ok"])
        }
        router.get("/readyz") { _, _ in
            state.ready.isReady
                ? JSONResponse.make(status: .ok, ["status": "ready"])
                : JSONResponse.make(status: .serviceUnavailable, ["status": "starting"])
        }
        let v1 = router.group("v1").add(middleware: BearerTokenMiddleware(token: Array(token.utf8)))
        v1.get("status") { _, _ in
            JSONResponse.make(status: .ok, state.status())
        }
        v1.get("agents") { _, _ in
            JSONResponse.make(status: .ok, AgentList(agents: state.registry.views(at: Clock.monotonicNow())))
        }
        v1.get("agents/:id") { _, context in
            let text = context.parameters.get("id") ?? ""
            guard let id = AgentID(text) else {
                return APIError.badRequest("\"\(text)\" is not an agent id (a UUID)", field: "id").response
            }
            guard let view = state.registry.view(of: id, at: Clock.monotonicNow()) else {
                return APIError(status: .notFound, message: "no agent with id \(id)", field: "id").response
            }
            return JSONResponse.make(status: .ok, view)
        }
        v1.post("agents") { request, _ in
            do {
                return try await register(request: request, state: state)
            } catch let error as APIError {
                return error.response
            }
        }
        return router
    }

    static func register(request: Request, state: LeadState) async throws -> Response {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: maxBodyBytes)
        } catch {
            throw APIError(status: .contentTooLarge, message: "the body is larger than \(maxBodyBytes) bytes")
        }
        let body: JSONValue
        do {
            body = try JSONValue.parse(Array(buffer.readableBytesView))
        } catch {
            throw APIError.badRequest("the body is \(error.description)")
        }
        let registration = try RegistrationRequest.validate(body)
        if state.registry.isNameTaken(registration.name) {
            throw APIError(status: .conflict, message: "an agent named \"\(registration.name)\" is already registered", field: "name")
        }
        guard let heartbeat = state.heartbeat else {
            throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
        }
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let row = AgentRow(
            id: AgentID.random(using: &generator), name: registration.name, agentClass: registration.agentClass,
            capabilities: registration.capabilities, secret: secret, registeredAtMs: Clock.wallMilliseconds())
        do {
            try await state.writer.write { connection in try AgentStore.insert(row, in: connection) }
        } catch let error as StoreError where error.message.contains("UNIQUE") {
            throw APIError(status: .conflict, message: "an agent named \"\(registration.name)\" is already registered", field: "name")
        }
        do {
            try state.registry.add(row)
        } catch {
            throw APIError(status: .conflict, message: "an agent named \"\(registration.name)\" is already registered", field: "name")
        }
        let credentials = AgentCredentials(
            id: row.id, secret: Hex.encode(secret), name: row.name, agentClass: row.agentClass,
            capabilities: row.capabilities, heartbeat: heartbeat)
        return JSONResponse.make(status: .created, credentials)
    }
}
