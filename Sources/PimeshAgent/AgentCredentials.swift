import Glibc
import PimeshCore
import PimeshSystem

/// What registration hands an agent: its identity and the secret that signs its heartbeats.
/// An agent keeps these (0600) and reuses them after restarts instead of registering again.
public struct AgentCredentials: Codable, Sendable, Equatable {
    public var id: AgentID
    public var secret: String
    public var name: String
    public var agentClass: AgentClass
    public var capabilities: [String]
    public var heartbeat: HeartbeatEndpoint
    /// Where the agent pulls work and posts results with its own credential
    /// (AgentAPICredential); nil in identities saved before the lead said.
    public var api: LeadEndpoint.API?
    /// The last heartbeat iteration the lead accepted from this agent, when the lead said
    /// (PIMESH_HEARTBEAT_LAST_ITERATION): heartbeats start above it. Not saved with the rest.
    public var lastAcceptedIteration: UInt64? = nil

    enum CodingKeys: String, CodingKey {
        case id, secret, name, capabilities, heartbeat, api
        case agentClass = "class"
    }

    public init(
        id: AgentID, secret: String, name: String, agentClass: AgentClass, capabilities: [String], heartbeat: HeartbeatEndpoint,
        api: LeadEndpoint.API? = nil
    ) {
        self.id = id
        self.secret = secret
        self.name = name
        self.agentClass = agentClass
        self.capabilities = capabilities
        self.heartbeat = heartbeat
        self.api = api
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

extension AgentCredentials {
    /// The identity the lead hands a supervised agent through its environment
    /// (docs/operations.md): PIMESH_AGENT_ID, _NAME, _SECRET_FD (or _SECRET), _CLASS, _CAPABILITIES,
    /// PIMESH_HEARTBEAT_HOST, _PORT, _INTERVAL_MS, _SOCKET, _LAST_ITERATION and PIMESH_API_HOST,
    /// _PORT, _SOCKET.
    @_optimize(size)  // cold: once as an agent starts (the 25 MB budget)
    public static func fromEnvironment(_ environment: [String: String]) throws -> AgentCredentials {
        struct Missing: Error, CustomStringConvertible {
            var description: String
        }
        func value(_ key: String) throws -> String {
            guard let text = environment[key], !text.isEmpty else {
                throw Missing(description: "\(key) is not set: this agent expects to be started by `pimesh run` from a manifest")
            }
            return text
        }
        guard let id = AgentID(try value("PIMESH_AGENT_ID")) else { throw Missing(description: "PIMESH_AGENT_ID is not a UUID") }
        let secret: String
        let secretSource: String
        if let number = environment["PIMESH_AGENT_SECRET_FD"], !number.isEmpty {
            guard let fd = Int32(number), fd >= 3 else {
                throw Missing(description: "PIMESH_AGENT_SECRET_FD is not a descriptor number of 3 or above: \(number)")
            }
            do {
                secret = try readSecret(from: fd)
            } catch {
                throw Missing(description: "cannot read the secret from descriptor \(fd) (PIMESH_AGENT_SECRET_FD): \(error)")
            }
            // Read from this process's own environment: its children must not take the number,
            // which names another descriptor, or none, from now on.
            if let own = getenv("PIMESH_AGENT_SECRET_FD"), String(cString: own) == number { unsetenv("PIMESH_AGENT_SECRET_FD") }
            secretSource = "the secret read from PIMESH_AGENT_SECRET_FD"
        } else {
            secret = try value("PIMESH_AGENT_SECRET")
            secretSource = "PIMESH_AGENT_SECRET"
        }
        guard Hex.decode(secret)?.count == 32 else { throw Missing(description: "\(secretSource) is not 64 hex digits") }
        guard let port = Int(try value("PIMESH_HEARTBEAT_PORT")), (1...65535).contains(port) else {
            throw Missing(description: "PIMESH_HEARTBEAT_PORT is not a port number")
        }
        guard let interval = Int(environment["PIMESH_HEARTBEAT_INTERVAL_MS"] ?? "250"), interval > 0 else {
            throw Missing(description: "PIMESH_HEARTBEAT_INTERVAL_MS is not a positive number")
        }
        guard let agentClass = AgentClass(name: environment["PIMESH_AGENT_CLASS"] ?? "CLASS_E_LOCAL") else {
            throw Missing(description: "PIMESH_AGENT_CLASS is not a known class")
        }
        let capabilities = (environment["PIMESH_AGENT_CAPABILITIES"] ?? "").split(separator: ",").map(String.init)
        var api: LeadEndpoint.API?
        if let host = environment["PIMESH_API_HOST"], let port = environment["PIMESH_API_PORT"].flatMap(Int.init), (1...65535).contains(port) {
            api = LeadEndpoint.API(host: host, port: port, unixSocket: environment["PIMESH_API_SOCKET"])
        }
        var lastAcceptedIteration: UInt64?
        if let text = environment["PIMESH_HEARTBEAT_LAST_ITERATION"] {
            guard let iteration = UInt64(text) else {
                throw Missing(description: "PIMESH_HEARTBEAT_LAST_ITERATION is not a number from 0 to 2^64-1")
            }
            lastAcceptedIteration = iteration
        }
        var credentials = AgentCredentials(
            id: id, secret: secret, name: try value("PIMESH_AGENT_NAME"), agentClass: agentClass, capabilities: capabilities,
            heartbeat: HeartbeatEndpoint(
                host: try value("PIMESH_HEARTBEAT_HOST"), port: port, unixSocket: environment["PIMESH_HEARTBEAT_SOCKET"],
                intervalMs: interval),
            api: api)
        credentials.lastAcceptedIteration = lastAcceptedIteration
        return credentials
    }

    private struct SystemError: Error, CustomStringConvertible {
        var description: String
    }

    /// All the pipe holds (a line of 64 hex digits), then the descriptor is closed: the secret
    /// is read once, and no program this agent runs inherits it.
    private static func readSecret(from fd: Int32) throws(SystemError) -> String {
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 128)
        while bytes.count <= 128 {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw SystemError(description: String(cString: strerror(errno))) }
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        while bytes.last == UInt8(ascii: "\n") || bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
