import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshStore
import PimeshSystem

/// The lead's local HTTP API (docs/api.md). Handlers parse, call the registry or the store,
/// and encode; nothing here owns a rule.
enum APIRouter {
    /// Registration bodies are a few hundred bytes; anything near this is not a registration.
    static let maxBodyBytes = 64 * 1024

    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func build(state: LeadState, tokens: LeadTokens) -> Router<LeadRequestContext> {
        let router = Router(context: LeadRequestContext.self)
        let routes = JSONErrors<LeadRequestContext>.Routes()
        router.add(middleware: JSONErrors(routes: routes))
        router.get("/healthz") { _, _ in
            JSONResponse.make(status: .ok, ["status": "ok"])
        }
        router.get("/readyz") { _, _ in
            let readiness = state.readiness
            return JSONResponse.make(status: readiness.isReady ? .ok : .serviceUnavailable, readiness)
        }
        router.get("/metrics") { _, _ in
            // Loopback only and free of secrets, so scrapers need no token.
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: state.metricsText())))
        }
        // Who may call what (docs/api.md): these four routes are the only ones open to agents'
        // own credentials and the join token; every other /v1 route is the operator's.
        let v1 = router.group("v1").add(
            middleware: BearerAuthentication(tokens: tokens, registry: state.registry, operators: OperatorPeers()))
        v1.post("agents") { request, context in
            await APIError.answering {
                guard context.caller.isOperator || context.caller == .join else {
                    throw APIError(status: .forbidden, message: "registering an agent needs the join token or the operator token")
                }
                return try await register(request: request, state: state, caller: context.caller)
            }
        }
        v1.get("agents/:id/work") { request, context in
            await APIError.answering {
                let (id, _) = try actingAgent(context, state)
                let query = request.uri.queryParameters
                let waitMs = try queryInteger(query.get("wait_ms"), name: "wait_ms", in: 0...state.config.tasks.longPollMaxMs) ?? 0
                let max = try queryInteger(query.get("max"), name: "max", in: 1...100) ?? 1
                let items = await state.tasks.pull(agent: id, max: max, wait: .milliseconds(waitMs))
                return JSONResponse.make(status: .ok, WorkBatch(items: items))
            }
        }
        v1.post("agents/:id/leave") { _, context in
            await APIError.answering {
                let (id, name) = try actingAgent(context, state)
                if let file = try await manifestFile(naming: name, state: state) {
                    // Its manifest expects it: the lead, not the agent, decides that it is gone.
                    // Only the operator learns where the manifest is.
                    let manifest = context.caller.isOperator ? "the manifest \(file)" : "a manifest"
                    throw APIError(status: .conflict, message: "\(name) is named by \(manifest): it cannot leave", field: "id")
                }
                let now = Clock.monotonicNow()
                _ = state.registry.leave(id, at: now)
                // Its work goes to others now rather than when its leases run out.
                let moved = state.tasks.migrateOrphans(of: id, now: now)
                return JSONResponse.make(
                    status: .ok, ["agent": name, "condition": AgentCondition.left.rawValue, "tasks_moved": String(moved.moved)])
            }
        }
        v1.post("tasks/:id/result") { request, context in
            await APIError.answering {
                let submission = try ResultSubmission.validate(try await RequestBody.json(request, limit: maxBodyBytes + 8192))
                try context.caller.require(actingFor: submission.agentID, field: "agent_id")
                switch try await state.tasks.complete(taskID: context.parameters.get("id") ?? "", with: submission) {
                case .accepted(let view):
                    return JSONResponse.make(status: .ok, view)
                case .alreadyFinished(let view):
                    // The first result won; the agent can drop this one.
                    return APIError(status: .conflict, message: "task \(view.id) is already \(view.state)", field: "id").response
                }
            }
        }
        v1.post("ops/:id/answers") { request, context in
            await APIError.answering {
                let answer = try AnswerSubmission.validate(try await RequestBody.json(request, limit: maxBodyBytes + 8192))
                try context.caller.require(actingFor: answer.agentID, field: "agent_id")
                let result = try await state.gather.answer(operationID: context.parameters.get("id") ?? "", answer)
                return JSONResponse.make(status: .ok, ["answer": result.rawValue])
            }
        }

        let operatorRoutes = v1.group().add(middleware: RequireOperator())
        operatorRoutes.get("status") { _, _ in
            JSONResponse.make(status: .ok, state.status())
        }
        operatorRoutes.get("agents") { request, _ in
            await APIError.answering {
                let query = request.uri.queryParameters
                let limit = try queryInteger(query.get("limit"), name: "limit", in: 1...10_000) ?? 1000
                let after = query.get("cursor")
                var views = state.agentViews().sorted { $0.name < $1.name }
                if let after { views.removeAll { $0.name <= after } }
                let more = views.count > limit
                let fitted = Paging.fit(Array(views.prefix(limit)))
                return JSONResponse.make(
                    status: .ok, AgentList(agents: fitted.page, nextCursor: more || fitted.cut ? fitted.page.last?.name : nil))
            }
        }
        operatorRoutes.get("agents/:id") { _, context in
            await APIError.answering {
                let (id, _) = try agent(context, state)
                guard let view = state.agentView(id) else {
                    throw APIError(status: .notFound, message: "no agent with id \(id)", field: "id")
                }
                return JSONResponse.make(status: .ok, view)
            }
        }
        operatorRoutes.delete("agents/:id") { _, context in
            await APIError.answering {
                let (id, name) = try agent(context, state)
                let moved = try await audited(state, context, kind: "agent_remove", subject: name) {
                    if let file = try await manifestFile(naming: name, state: state) {
                        throw APIError(
                            status: .conflict, message: "\(name) is named by the manifest \(file): remove that file first, then the agent",
                            field: "id")
                    }
                    // Out of the registry first, so that no new work reaches it while the delete commits.
                    state.registry.remove(id)
                    let moved = state.tasks.migrateOrphans(of: id, now: Clock.monotonicNow())
                    state.tasks.forget(agent: id)
                    try await state.writer.write { connection in try AgentStore.delete(id: id, in: connection) }
                    return moved
                }
                state.events.append(
                    kind: "removed", agent: name, detail: "removed by \(context.caller.label); \(moved.moved) task(s) requeued")
                return JSONResponse.make(status: .ok, ["agent": name, "removed": "true"])
            }
        }
        operatorRoutes.post("agents/:id/quarantine") { request, context in
            await APIError.answering {
                let (id, name) = try agent(context, state)
                let body = try await RequestBody.json(request, limit: 4096)
                let reader = try BodyReader(body, allowed: ["reason"])
                // A reason that is too long is refused, and the refusal is recorded.
                let given = Result { try reader.string("reason", maxBytes: 512) }
                let reason = ((try? given.get()) ?? nil ?? "quarantined by an operator") + " (\(context.caller.label))"
                try await audited(state, context, kind: "quarantine", subject: name, details: [("reason", reason)]) {
                    _ = try given.get()
                    try await state.conflicts.quarantine(id, reason: reason)
                    state.tasks.requeueInbox(of: id)
                }
                return JSONResponse.make(status: .ok, ["agent": name, "quarantined": "true"])
            }
        }
        operatorRoutes.post("agents/:id/release") { _, context in
            await APIError.answering {
                let (id, name) = try agent(context, state)
                try await audited(state, context, kind: "release", subject: name) {
                    guard state.registry.quarantinedNames().contains(name) else {
                        throw APIError(status: .conflict, message: "\(name) is not quarantined: there is nothing to release")
                    }
                    try await state.conflicts.release(id, actor: context.caller.label)
                }
                state.events.append(kind: "released", agent: name, detail: "released from quarantine by \(context.caller.label)")
                return JSONResponse.make(status: .ok, ["agent": name, "quarantined": "false"])
            }
        }
        operatorRoutes.post("tasks") { request, _ in
            await APIError.answering {
                let submission = try TaskSubmission.validate(try await RequestBody.json(request, limit: maxBodyBytes + 4096))
                switch try await state.tasks.submit(submission) {
                case .created(let view): return JSONResponse.make(status: .created, view)
                case .existing(let view): return JSONResponse.make(status: .ok, view)
                }
            }
        }
        operatorRoutes.get("tasks") { request, _ in
            await APIError.answering {
                let query = request.uri.queryParameters
                let limit = try queryInteger(query.get("limit"), name: "limit", in: 1...10_000) ?? 100
                var cursor: TaskStore.Cursor?
                if let text = query.get("cursor") {
                    guard let parsed = TaskService.cursor(text) else {
                        throw APIError.badRequest("cursor \"\(text)\" is not a nextCursor this lead gave out", field: "cursor")
                    }
                    cursor = parsed
                }
                let payloads = try queryBool(query.get("payload"), name: "payload") ?? false
                var filter: TaskState?
                if let text = query.get("state") {
                    guard let parsed = TaskState(rawValue: text) else {
                        let known = TaskState.allCases.map(\.rawValue).joined(separator: ", ")
                        throw APIError.badRequest("state \"\(text)\" is not one of \(known)", field: "state")
                    }
                    filter = parsed
                }
                return JSONResponse.make(
                    status: .ok, try await state.tasks.list(limit: limit, state: filter, after: cursor, payloads: payloads))
            }
        }
        operatorRoutes.get("tasks/:id") { _, context in
            await APIError.answering {
                let id = try await taskID(context, state)
                guard let view = try await state.tasks.task(id: id) else {
                    throw APIError(status: .notFound, message: "no task with id \(id)", field: "id")
                }
                return JSONResponse.make(status: .ok, view)
            }
        }
        operatorRoutes.post("tasks/:id/cancel") { _, context in
            await APIError.answering {
                let id = try await taskID(context, state)
                let cancelled = try await audited(state, context, kind: "task_cancel", subject: id) { try await state.tasks.cancel(taskID: id) }
                state.events.append(kind: "task_cancelled", agent: cancelled.agentName, detail: "task \(cancelled.id) cancelled by \(context.caller.label)")
                return JSONResponse.make(status: .ok, cancelled)
            }
        }
        for kind in [GatherService.Kind.ask, .broadcast] {
            operatorRoutes.post(RouterPath(stringLiteral: kind.rawValue)) { request, context in
                await APIError.answering {
                    let gather = try GatherRequest.validate(try await RequestBody.json(request, limit: maxBodyBytes + 4096))
                    try state.checkScatterAllowed(gather)
                    guard gather.approved && state.health.policy.scatterNeedsApproval else {
                        return JSONResponse.make(status: .ok, try await state.gather.run(kind, gather))
                    }
                    let report = try await audited(
                        state, context, kind: "\(kind.rawValue)_approved", subject: gather.capability ?? "all",
                        details: [("level", state.health.level.rawValue)]
                    ) { try await state.gather.run(kind, gather) }
                    return JSONResponse.make(status: .ok, report)
                }
            }
        }
        addSupervisionRoutes(to: operatorRoutes, state: state)
        addAuditRoutes(to: operatorRoutes, state: state)
        addIncidentRoutes(to: operatorRoutes, state: state)
        addDrillRoutes(to: operatorRoutes, state: state)
        operatorRoutes.post("tokens/:kind/rotate") { _, context in
            await APIError.answering {
                let text = context.parameters.get("kind") ?? ""
                guard let kind = LeadTokens.Kind(rawValue: text) else {
                    throw APIError.badRequest("token \"\(text)\" is not one of operator, join", field: "kind")
                }
                try await audited(state, context, kind: "token_rotate", subject: kind.rawValue) {
                    do {
                        try tokens.rotate(kind)
                    } catch {
                        throw APIError(status: .internalServerError, message: "the \(kind.rawValue) token was not rotated: \(error)")
                    }
                }
                state.events.append(kind: "token_rotated", agent: nil, detail: "\(kind.rawValue) token rotated by \(context.caller.label)")
                return JSONResponse.make(status: .ok, ["token": kind.rawValue, "file": tokens.dataDir + "/" + kind.fileName])
            }
        }
        operatorRoutes.get("leds") { _, _ in
            JSONResponse.make(status: .ok, state.leds.report)
        }
        operatorRoutes.post("conflicts/:seq/resolve") { request, context in
            await APIError.answering {
                let text = context.parameters.get("seq") ?? ""
                guard let seq = Int64(text), seq > 0 else {
                    throw APIError.badRequest("conflict \"\(text)\" is not a sequence number (SEQ in `pimesh conflicts`)", field: "seq")
                }
                let body = try await RequestBody.json(request, limit: 8192)
                let reader = try BodyReader(body, allowed: ["note"])
                let note = try reader.string("note", maxBytes: 1024) ?? ""
                // Refused inside the audited action, so that the audit log records the refusal.
                let record = try await audited(state, context, kind: "conflict_resolve", subject: String(seq), details: [("note", note)]) {
                    switch try await state.conflicts.resolve(seq: seq, actor: context.caller.label, note: note) {
                    case .resolved(let record): return record
                    case .alreadyResolved(let resolution):
                        throw APIError(
                            status: .conflict,
                            message: "conflict #\(seq) was already resolved by \(resolution.actor) at \(UTCTime.iso8601(epochMs: resolution.atMs))")
                    }
                }
                let name = state.registry.name(of: record.agentID) ?? record.agentID.description
                state.events.append(kind: "conflict_resolved", agent: name, detail: "conflict #\(seq) resolved by \(context.caller.label)")
                return JSONResponse.make(status: .ok, ["seq": String(seq), "resolved": "true"])
            }
        }
        operatorRoutes.get("conflicts") { request, _ in
            await APIError.answering {
                let query = request.uri.queryParameters
                let limit = try queryInteger(query.get("limit"), name: "limit", in: 1...10_000) ?? 100
                let before = try queryInteger(query.get("cursor"), name: "cursor", in: 1...Int.max)
                return JSONResponse.make(status: .ok, try await state.conflicts.list(limit: limit, before: before.map(Int64.init)))
            }
        }
        routes.set(router.routes)
        return router
    }

    /// The agent named by the `:id` path parameter: its UUID, or its name as operators type it.
    @_optimize(size)  // cold: operators' commands (the 25 MB budget)
    static func agent(_ context: LeadRequestContext, _ state: LeadState) throws(APIError) -> (AgentID, String) {
        let text = context.parameters.get("id") ?? ""
        switch state.registry.lookUp(text) {
        case .found(let id, let name): return (id, name)
        case .ambiguous(let names):
            throw APIError(status: .conflict, message: "\"\(text)\" is the start of several agents' ids: \(names.joined(separator: ", ")); type more of it", field: "id")
        case .nameAlsoIDPrefix(_, let name, let others):
            throw APIError(
                status: .conflict,
                message: "\"\(name)\" is an agent's name and the start of the id of \(others.joined(separator: ", ")); use the whole id of the one you mean",
                field: "id")
        case .none:
            throw APIError(status: .notFound, message: "no agent with id or name \"\(text)\"", field: "id")
        }
    }

    /// The agent an agent-scoped route's `:id` names: any for an operator, and for an agent's
    /// credential only itself (its id or name), with the same 403 whether or not another exists.
    static func actingAgent(_ context: LeadRequestContext, _ state: LeadState) throws(APIError) -> (AgentID, String) {
        guard let own = try context.caller.ownAgentOnly() else { return try agent(context, state) }
        // A credential is known only while its agent is registered: the name is there.
        let text = context.parameters.get("id") ?? ""
        guard let name = state.registry.name(of: own), AgentID(text) == own || text == name else { throw Caller.notItsOwn(field: "id") }
        return (own, name)
    }

    /// The task a path's id names: a whole id or a unique prefix of one.
    static func taskID(_ context: LeadRequestContext, _ state: LeadState) async throws -> String {
        let text = context.parameters.get("id") ?? ""
        switch try await state.tasks.resolveTaskID(text) {
        case .unique(let id): return id
        case .ambiguous(let ids):
            throw APIError(status: .conflict, message: "\"\(text)\" is the start of several task ids: \(ids.joined(separator: ", ")); type more of it", field: "id")
        case .none:
            // Not a prefix of any: the lookup by the text itself says "no task".
            return text
        }
    }

    static func queryInteger(_ text: String?, name: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw APIError.badRequest("query parameter \(name) must be a whole number in \(range.lowerBound)…\(range.upperBound), not \"\(text)\"", field: name)
        }
        return value
    }

    static func queryBool(_ text: String?, name: String) throws(APIError) -> Bool? {
        guard let text else { return nil }
        switch text {
        case "true", "1": return true
        case "false", "0": return false
        default: throw APIError.badRequest("query parameter \(name) must be true or false, not \"\(text)\"", field: name)
        }
    }

    /// The manifest that names `name`, looked up on the supervision thread: a rescan of agents.d
    /// stats every file and parses the changed ones (and resolves their users through NSS).
    static func manifestFile(naming name: String, state: LeadState) async throws -> String? {
        guard let supervisor = state.supervisor else { return nil }
        return try await Blocking.onSupervisionThread { supervisor.manifest(naming: name) }
    }

    static func register(request: Request, state: LeadState, caller: Caller) async throws -> Response {
        let admission = try state.registrations.admit(registered: { state.registry.count }, now: Clock.monotonicNow())
        defer { admission.end() }
        let body = try await RequestBody.json(request, limit: maxBodyBytes)
        let registration = try RegistrationRequest.validate(body)
        if let supervisor = state.supervisor,
            let manifest = try await Blocking.onSupervisionThread({ supervisor.supervisedManifest(named: registration.name) })
        {
            // The lead makes that agent's identity itself; a squatter would run it with its secret.
            // Only the operator learns where the manifest is (a join-token holder is a stranger).
            let owner = caller.isOperator ? "the supervised agent of \(manifest)" : "a supervised agent"
            throw APIError(status: .conflict, message: "the name \"\(registration.name)\" belongs to \(owner)", field: "name")
        }
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
            capabilities: registration.capabilities, secret: secret, registeredAtMs: Clock.wallMilliseconds(), selfRegistered: true)
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
            capabilities: row.capabilities, heartbeat: heartbeat, api: state.api)
        return JSONResponse.make(status: .created, credentials)
    }
}
