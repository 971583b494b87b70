import PimeshCore

/// What registration hands an agent: its identity and the secret that signs its heartbeats.
/// An agent keeps these (0600) and reuses them after restarts instead of registering again.
public struct AgentCredentials: Codable, Sendable, Equatable {
    public var id: AgentID
    public var secret: String
    public var name: String
    public var agentClass: AgentClass
    public var capabilities: [String]
    public var heartbeat: HeartbeatEndpoint

    enum CodingKeys: String, CodingKey {
        case id, secret, name, capabilities, heartbeat
        case agentClass = "class"
    }

    public init(id: AgentID, secret: String, name: String, agentClass: AgentClass, capabilities: [String], heartbeat: HeartbeatEndpoint) {
        self.id = id
        self.secret = secret
        self.name = name
        self.agentClass = agentClass
        self.capabilities = capabilities
        self.heartbeat = heartbeat
    }

    public var secretBytes: [UInt8]? {
        Hex.decode(secret)
    }
}

/// Where and how often to send heartbeats. JSON keys are snake_case through `APICoding`.
public struct HeartbeatEndpoint: Codable, Sendable, Equatable {
    public var host: String
    public var port: Int
    public var unixSocket: String?
    public var intervalMs: Int

    public init(host: String, port: Int, unixSocket: String?, intervalMs: Int) {
        self.host = host
        self.port = port
        self.unixSocket = unixSocket
        self.intervalMs = intervalMs
    }
}
