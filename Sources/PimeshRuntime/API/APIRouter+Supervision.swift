import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshSnapshot

extension APIRouter {
    /// Operator verbs and the health event log (docs/api.md "Supervision").
    static func addSupervisionRoutes(to v1: RouterGroup<LeadRequestContext>, state: LeadState) {
        // The caller (with its uid on the unix socket) goes into each action's event (issue 12).
        v1.post("agents/:id/heal") { _, context in
            await APIError.answering {
                let (_, name) = try agent(context, state)
                let action = try await audited(state, context, kind: "heal", subject: name) {
                    try await supervisorAction(state) { (supervisor: Supervisor) throws(Supervisor.ActionError) in try supervisor.heal(name, reason: "\(context.caller.label) asked", byOperator: true) }
                }
                return JSONResponse.make(status: .ok, ["agent": name, "action": action])
            }
        }
        v1.post("agents/:id/freeze") { _, context in
            await APIError.answering {
                let (_, name) = try agent(context, state)
                let action = try await audited(state, context, kind: "freeze", subject: name) {
                    try await supervisorAction(state) { (supervisor: Supervisor) throws(Supervisor.ActionError) in try supervisor.freeze(name, true, by: context.caller.label) }
                }
                return JSONResponse.make(status: .ok, ["agent": name, "action": action])
            }
        }
        v1.post("agents/:id/thaw") { _, context in
            await APIError.answering {
                let (_, name) = try agent(context, state)
                let action = try await audited(state, context, kind: "thaw", subject: name) {
                    try await supervisorAction(state) { (supervisor: Supervisor) throws(Supervisor.ActionError) in try supervisor.freeze(name, false, by: context.caller.label) }
                }
                return JSONResponse.make(status: .ok, ["agent": name, "action": action])
            }
        }
        for verb in ["stop", "start", "restart", "rollback"] {
            v1.post("agents/:id/\(verb)") { _, context in
                await APIError.answering {
                    let (_, name) = try agent(context, state)
                    let caller = context.caller.label
                    let action = try await audited(state, context, kind: "agent_\(verb)", subject: name) {
                        try await supervisorAction(state) { (supervisor: Supervisor) throws(Supervisor.ActionError) in
                            switch verb {
                            case "stop": try supervisor.stop(name, by: caller)
                            case "start": try supervisor.start(name, by: caller)
                            case "rollback": try supervisor.rollback(name, by: caller)
                            default: try supervisor.restart(name, by: caller)
                            }
                        }
                    }
                    return JSONResponse.make(status: .ok, ["agent": name, "action": action])
                }
            }
        }
        v1.post("reload") { _, context in
            await APIError.answering {
                guard let reloader = state.reloader else {
                    throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
                }
                let report = try await audited(state, context, kind: "reload", subject: "node") {
                    do {
                        return try await reloader.reload(by: context.caller.label)
                    } catch let refused as Reloader.Refused {
                        throw APIError(status: .conflict, message: refused.description)
                    }
                }
                return JSONResponse.make(status: .ok, report)
            }
        }
        v1.get("agents/:id/logs") { request, context in
            await APIError.answering {
                let (_, name) = try agent(context, state)
                let bytes = try queryInteger(request.uri.queryParameters.get("bytes"), name: "bytes", in: 1...(16 << 20)) ?? 65536
                let tail = try await supervisorAction(state) { (supervisor: Supervisor) throws(Supervisor.ActionError) in try supervisor.logTail(name, bytes: bytes) }
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; charset=utf-8"
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: tail)))
            }
        }
        v1.post("snapshots") { _, context in
            await APIError.answering {
                guard let snapshots = state.snapshots else {
                    throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
                }
                let made = try await audited(state, context, kind: "snapshot", subject: "node") {
                    do {
                        return try await snapshots.takeNow()
                    } catch {
                        throw APIError(status: .internalServerError, message: "the snapshot failed: \(error)")
                    }
                }
                return JSONResponse.make(status: .created, made.entry.manifest)
            }
        }
        v1.get("events") { request, _ in
            await APIError.answering {
                let query = request.uri.queryParameters
                let since = try queryInteger(query.get("since"), name: "since", in: 0...Int.max) ?? 0
                let limit = try queryInteger(query.get("limit"), name: "limit", in: 1...10_000) ?? 1000
                var list = state.events.list(since: UInt64(since), limit: limit)
                let fitted = Paging.fit(list.events)
                if fitted.cut, let last = fitted.page.last {
                    list.events = fitted.page
                    list.next = last.sequence
                }
                return JSONResponse.make(status: .ok, list)
            }
        }
    }

    /// Runs an operator's action between a durable intent row and an outcome row of the audit
    /// log (docs/audit.md): when the intent cannot be made durable, the action is not taken.
    static func audited<T>(
        _ state: LeadState, _ context: LeadRequestContext, kind: String, subject: String, details: [(String, String)] = [],
        _ action: () async throws -> T
    ) async throws -> T {
        guard let audit = state.audit else { return try await action() }
        do {
            return try await audit.audited(
                actor: context.caller.label, kind: kind, subject: subject, details: details,
                judge: { error in
                    if let refusal = error as? APIError { return (refusal.status.code < 500 ? "refused" : "failed", refusal.message) }
                    return ("failed", "\(error)")
                }, action)
        } catch let notTaken as AuditLog.IntentNotDurable {
            // The store's own refusal keeps its status and text: 507 and Retry-After on a full disk.
            guard var refusal = notTaken.underlying as? APIError else {
                throw APIError(status: .serviceUnavailable, message: notTaken.description)
            }
            refusal.message = notTaken.description
            throw refusal
        }
    }

    /// Runs a supervisor action on the supervision thread (it may spawn, signal, write cgroupfs
    /// or read a log) and maps its refusal to an API error.
    static func supervisorAction<T: Sendable>(
        _ state: LeadState, _ body: @escaping @Sendable (Supervisor) throws(Supervisor.ActionError) -> T
    ) async throws -> T {
        guard let supervisor = state.supervisor else {
            throw APIError(status: .serviceUnavailable, message: "the lead is still starting; try again in a moment")
        }
        let result: Result<T, Supervisor.ActionError> = try await Blocking.onSupervisionThread {
            do throws(Supervisor.ActionError) {
                return .success(try body(supervisor))
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let value): return value
        case .failure(let error):
            switch error {
            case .unknown: throw APIError(status: .notFound, message: error.description, field: "id")
            case .notManaged, .unsupported: throw APIError(status: .conflict, message: error.description, field: "id")
            case .failed: throw APIError(status: .internalServerError, message: error.description)
            }
        }
    }
}
