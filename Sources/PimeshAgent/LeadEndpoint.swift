import FoundationEssentials
import PimeshCore

/// What a running lead writes to `<data-dir>/lead.json` so that clients find it by themselves.
public struct LeadEndpoint: Codable, Sendable, Equatable {
    public var pid: Int32
    public var version: String
    public var startedAtMs: Int64
    public var api: API
    public var heartbeat: HeartbeatEndpoint

    public struct API: Codable, Sendable, Equatable {
        public var host: String
        public var port: Int
        public var unixSocket: String?

        public init(host: String, port: Int, unixSocket: String?) {
            self.host = host
            self.port = port
            self.unixSocket = unixSocket
        }
    }

    public init(pid: Int32, version: String, startedAtMs: Int64, api: API, heartbeat: HeartbeatEndpoint) {
        self.pid = pid
        self.version = version
        self.startedAtMs = startedAtMs
        self.api = api
        self.heartbeat = heartbeat
    }

    public static let fileName = "lead.json"
    /// The operator token: everything the API offers.
    public static let tokenFileName = "node-token"
    /// The join token: registering attached agents, nothing else.
    public static let joinTokenFileName = "join-token"
}

/// The errors a client meets before it ever reaches the lead.
public enum LeadDiscoveryError: Error, CustomStringConvertible {
    case noLead(dataDir: String)
    case unreadable(path: String, reason: String)
    case noToken(path: String)

    public var description: String {
        switch self {
        case .noLead(let dir):
            "no lead is running with data dir \(dir) (no \(dir)/\(LeadEndpoint.fileName)); start one with `pimesh run --data-dir \(dir)`"
        case .unreadable(let path, let reason):
            "cannot read \(path): \(reason)"
        case .noToken(let path):
            "cannot read the node token at \(path); it is created by `pimesh run` and readable by its owner only"
        }
    }
}

public enum LeadDiscovery {
    /// The data dir clients use when none is given: `$PIMESH_DATA_DIR`, else `./.pimesh`.
    public static func defaultDataDir(environment: [String: String]) -> String {
        if let dir = environment["PIMESH_DATA_DIR"], !dir.isEmpty { return dir }
        return "./.pimesh"
    }

    public static func endpoint(dataDir: String) throws -> LeadEndpoint {
        let path = dataDir + "/" + LeadEndpoint.fileName
        guard let bytes = try? FileIO.read(path: path) else {
            throw LeadDiscoveryError.noLead(dataDir: dataDir)
        }
        do {
            return try APICoding.decode(LeadEndpoint.self, from: bytes)
        } catch {
            throw LeadDiscoveryError.unreadable(path: path, reason: "\(error)")
        }
    }

    public static func token(dataDir: String) throws -> String {
        let path = dataDir + "/" + LeadEndpoint.tokenFileName
        guard let bytes = try? FileIO.read(path: path) else {
            throw LeadDiscoveryError.noToken(path: path)
        }
        let token = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        guard !token.isEmpty else { throw LeadDiscoveryError.noToken(path: path) }
        return token
    }
}

extension String {
    public func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
