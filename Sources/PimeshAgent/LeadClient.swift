import FoundationEssentials
import Glibc
import PimeshCore
import PimeshSystem

/// The lead's API as a client sees it: what the CLI, Swift agents and the swarm call.
public struct LeadClient: Sendable {
    public let http: LoopbackHTTPClient
    public let token: String

    public init(address: LocalAddress, token: String, timeoutMs: Int = 5000) {
        self.http = LoopbackHTTPClient(address: address, timeoutMs: timeoutMs)
        self.token = token
    }

    /// Finds the lead that runs with `dataDir`: loopback TCP with the operator token, or, for an
    /// operator who may not read the token (a member of the `pimesh` group), the unix socket,
    /// where the lead knows the caller by its uid.
    public init(dataDir: String, timeoutMs: Int = 5000) throws {
        let endpoint = try LeadDiscovery.endpoint(dataDir: dataDir)
        do {
            let token = try LeadDiscovery.token(dataDir: dataDir)
            self.init(address: .loopback(host: endpoint.api.host, port: endpoint.api.port), token: token, timeoutMs: timeoutMs)
        } catch let error as LeadDiscoveryError {
            guard let socket = endpoint.api.unixSocket, FileIO.exists(socket) else { throw error }
            self.init(address: .unix(path: socket), token: "", timeoutMs: timeoutMs)
        }
    }

    /// An agent's own client: its credential (AgentAPICredential) opens its work, results and
    /// answers, nothing else. The address comes from the lead's current `lead.json` when the
    /// agent can read `dataDir` (a restarted lead may listen elsewhere), else from its credentials.
    public static func forAgent(_ credentials: AgentCredentials, dataDir: String? = nil, timeoutMs: Int = 5000) throws -> LeadClient {
        guard let bearer = AgentAPICredential.bearer(for: credentials) else {
            throw APIError(status: 0, message: "agent \(credentials.name): the secret is not hex")
        }
        let api: LeadEndpoint.API
        if let dataDir, let current = try? LeadDiscovery.endpoint(dataDir: dataDir).api {
            api = current
        } else if let known = credentials.api {
            api = known
        } else if let dataDir {
            api = try LeadDiscovery.endpoint(dataDir: dataDir).api
        } else {
            throw APIError(status: 0, message: "agent \(credentials.name): no API address (PIMESH_API_HOST/PORT) and no data dir")
        }
        return LeadClient(address: .loopback(host: api.host, port: api.port), token: bearer, timeoutMs: timeoutMs)
    }

    /// An answer from the lead that was not a success; carries the lead's own error message.
    public struct APIError: Error, CustomStringConvertible {
        public var status: Int
        public var message: String

        public var description: String { "the lead answered \(status): \(message)" }
    }

    struct ErrorBody: Decodable {
        var error: String
    }

    /// No header on the unix socket without a token: the lead then goes by the peer's uid.
    public var authorization: [(String, String)] {
        token.isEmpty ? [] : [("Authorization", "Bearer \(token)")]
    }

    public func get(_ path: String) throws -> [UInt8] {
        try checked(http.request("GET", path, headers: authorization))
    }

    public func post(_ path: String, json: [UInt8]) throws -> [UInt8] {
        try checked(http.request("POST", path, headers: authorization + [("Content-Type", "application/json")], body: json))
    }

    public func delete(_ path: String) throws -> [UInt8] {
        try checked(http.request("DELETE", path, headers: authorization))
    }

    private func checked(_ response: LoopbackHTTPClient.Response) throws -> [UInt8] {
        guard (200..<300).contains(response.status) else {
            let message = (try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body)).error) ?? response.text
            throw APIError(status: response.status, message: message)
        }
        return response.body
    }

    public struct Registration: Encodable, Sendable {
        public var name: String
        public var agentClass: AgentClass
        public var capabilities: [String]

        enum CodingKeys: String, CodingKey {
            case name, capabilities
            case agentClass = "class"
        }

        public init(name: String, agentClass: AgentClass = .local, capabilities: [String] = []) {
            self.name = name
            self.agentClass = agentClass
            self.capabilities = capabilities
        }
    }

    /// Registers, waiting out the lead's registration rate (429) for up to a minute: a swarm or a
    /// node booting many agents at once registers them all, a little later.
    public func register(_ registration: Registration) throws -> AgentCredentials {
        let body = try APICoding.encode(registration)
        var attempts = 0
        while true {
            do {
                return try APICoding.decode(AgentCredentials.self, from: post("/v1/agents", json: body))
            } catch let error as APIError where error.status == 429 && attempts < 120 {
                attempts += 1
                usleep(500_000)
            }
        }
    }

    /// The same lead with another timeout: a long poll needs longer than its wait.
    public func withTimeout(milliseconds: Int) -> LeadClient {
        LeadClient(address: http.address, token: token, timeoutMs: milliseconds)
    }

    // MARK: Tasks

    public struct TaskRequest: Encodable, Sendable {
        public var capability: String
        public var payload: String
        public var weight: Double?
        public var deadlineMs: Int?
        public var idempotencyKey: String?
        /// 0 background, 1 low, 2 normal (the lead's default), 3 critical.
        public var priority: Int?

        public init(
            capability: String, payload: String = "", weight: Double? = nil, deadlineMs: Int? = nil, idempotencyKey: String? = nil,
            priority: Int? = nil
        ) {
            self.priority = priority
            self.capability = capability
            self.payload = payload
            self.weight = weight
            self.deadlineMs = deadlineMs
            self.idempotencyKey = idempotencyKey
        }
    }

    public func submit(_ task: TaskRequest) throws -> TaskView {
        try APICoding.decode(TaskView.self, from: post("/v1/tasks", json: try APICoding.encode(task)))
    }

    public func task(id: String) throws -> TaskView {
        try APICoding.decode(TaskView.self, from: get("/v1/tasks/\(id)"))
    }

    // List routes answer in pages of at most 1 MiB (docs/api.md, "Pages"); these follow them.

    /// Every registered agent, by name.
    public func agents() throws -> AgentList {
        var all = AgentList(agents: [])
        var cursor: String?
        repeat {
            let page = try APICoding.decode(AgentList.self, from: get("/v1/agents" + (cursor.map { "?cursor=" + Self.escape($0) } ?? "")))
            all.agents += page.agents
            cursor = page.nextCursor
        } while cursor != nil
        return all
    }

    /// Up to `limit` of the newest tasks, optionally of one state, with payloads when asked.
    @_optimize(size)  // cold: a CLI command (the 25 MB budget)
    public func tasks(limit: Int, state: String? = nil, payloads: Bool = false) throws -> TaskList {
        var all: TaskList?
        var cursor: String?
        repeat {
            let want = limit - (all?.tasks.count ?? 0)
            var path = "/v1/tasks?limit=\(min(want, 10_000))"
            if let state { path += "&state=" + Self.escape(state) }
            if payloads { path += "&payload=true" }
            if let cursor { path += "&cursor=" + Self.escape(cursor) }
            let page = try APICoding.decode(TaskList.self, from: get(path))
            if all == nil { all = page } else { all!.tasks += page.tasks }
            cursor = page.nextCursor
        } while cursor != nil && all!.tasks.count < limit
        all!.nextCursor = cursor
        return all!
    }

    /// Up to `limit` of the newest conflict log entries.
    public func conflicts(limit: Int) throws -> ConflictList {
        var all: ConflictList?
        var cursor: String?
        repeat {
            let want = limit - (all?.conflicts.count ?? 0)
            let page = try APICoding.decode(
                ConflictList.self, from: get("/v1/conflicts?limit=\(min(want, 10_000))" + (cursor.map { "&cursor=" + $0 } ?? "")))
            if all == nil { all = page } else { all!.conflicts += page.conflicts }
            cursor = page.nextCursor
        } while cursor != nil && all!.conflicts.count < limit
        all!.nextCursor = cursor
        return all!
    }

    /// Query values here are names, states and cursors: anything outside [A-Za-z0-9._-] is escaped.
    static func escape(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += byte < 16 ? "%0" : "%"
                out += String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// Waits up to `waitMs` for work; an empty batch means none came.
    public func pullWork(agentID: AgentID, waitMs: Int, max: Int = 1) throws -> [WorkItem] {
        let client = withTimeout(milliseconds: waitMs + 5000)
        return try APICoding.decode(WorkBatch.self, from: client.get("/v1/agents/\(agentID)/work?wait_ms=\(waitMs)&max=\(max)")).items
    }

    /// Posts a task's result. A 409 means the task was already finished (another attempt won,
    /// or it was cancelled): the agent drops its result and goes on.
    @discardableResult
    public func postResult(taskID: String, _ report: ResultReport) throws -> Bool {
        do {
            _ = try post("/v1/tasks/\(taskID)/result", json: try APICoding.encode(report))
            return true
        } catch let error as APIError where error.status == 409 {
            return false
        }
    }

    public func postAnswer(operationID: String, _ report: AnswerReport) throws {
        _ = try post("/v1/ops/\(operationID)/answers", json: try APICoding.encode(report))
    }

    /// Says goodbye: the lead marks the agent `left` (not a failure, out of the healthy ratio)
    /// and gives its work to others. An agent that stops on purpose calls this first.
    public func leave(agentID: AgentID) throws {
        _ = try post("/v1/agents/\(agentID)/leave", json: Array("{}".utf8))
    }
}
