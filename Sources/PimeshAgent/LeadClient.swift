import FoundationEssentials
import PimeshCore

/// The lead's API as a client sees it: what the CLI, Swift agents and the swarm call.
public struct LeadClient: Sendable {
    public let http: LoopbackHTTPClient
    public let token: String

    public init(address: LocalAddress, token: String, timeoutMs: Int = 5000) {
        self.http = LoopbackHTTPClient(address: address, timeoutMs: timeoutMs)
        self.token = token
    }

    /// Finds the lead that runs with `dataDir`: its unix socket when there is one, else loopback TCP.
    public init(dataDir: String, timeoutMs: Int = 5000) throws {
        let endpoint = try LeadDiscovery.endpoint(dataDir: dataDir)
        let token = try LeadDiscovery.token(dataDir: dataDir)
        self.init(address: .loopback(host: endpoint.api.host, port: endpoint.api.port), token: token, timeoutMs: timeoutMs)
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

    public func get(_ path: String) throws -> [UInt8] {
        try checked(http.request("GET", path, headers: [("Authorization", "Bearer \(token)")]))
    }

    public func post(_ path: String, json: [UInt8]) throws -> [UInt8] {
        try checked(
            http.request(
                "POST", path, headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")], body: json))
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

    public func register(_ registration: Registration) throws -> AgentCredentials {
        let answer = try post("/v1/agents", json: try APICoding.encode(registration))
        return try APICoding.decode(AgentCredentials.self, from: answer)
    }
}
