import FoundationEssentials
import Glibc
import PimeshCore
import PimeshSystem

/// What a running lead writes to `<data-dir>/lead.json` so that clients find it by themselves.
public struct LeadEndpoint: Codable, Sendable, Equatable {
    public var pid: Int32
    public var version: String
    public var startedAtMs: Int64
    public var api: API
    public var heartbeat: HeartbeatEndpoint
    /// The SHA-256 of the binary when it runs from `<data-dir>/releases/` (`pimesh update`),
    /// nil for the packaged one: an updater knows by it that the lead it waits for is the new one.
    public var release: String?
    /// Why the packaged binary runs although `<data-dir>/current` names a release (the release's
    /// binary changed since it was staged, or others may write it): the update is not in force.
    public var releaseRefused: String?

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

    public init(
        pid: Int32, version: String, startedAtMs: Int64, api: API, heartbeat: HeartbeatEndpoint, release: String? = nil, releaseRefused: String? = nil
    ) {
        self.release = release
        self.releaseRefused = releaseRefused
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
    /// lead.json is there but its process is not: the lead died without cleaning up.
    case notRunning(dataDir: String, pid: Int32, startedAtMs: Int64, why: String)
    case unreadable(path: String, reason: String)
    case noToken(path: String)

    public var description: String {
        switch self {
        case .noLead(let dir):
            // Never "start one here": on a Pi the lead runs from its unit with another data dir,
            // and a second lead beside it is the last thing an operator needs.
            "no lead is running with data dir \(dir) (no \(dir)/\(LeadEndpoint.fileName)); is the lead running (`systemctl status pimesh`), and is this its --data-dir?"
        case .notRunning(let dir, let pid, let startedAtMs, let why):
            "the lead is not running (last pid \(pid), started \(UTCTime.iso8601(epochMs: startedAtMs)); \(why)): it did not stop cleanly and left \(dir)/\(LeadEndpoint.fileName) behind; see `journalctl -u pimesh` for why, and `systemctl start pimesh` to start it again"
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
        let bytes: [UInt8]
        do {
            bytes = try FileIO.read(path: path)
        } catch let failure as FileIO.Failure where failure.errno == EACCES || failure.errno == EPERM {
            // "No lead is running" sent a user who may not look into the data dir off to
            // start one, when the lead runs and only the permission is missing.
            throw LeadDiscoveryError.unreadable(
                path: path, reason: "permission denied; the data dir is its lead's user's alone (mode 0700): run this as that user or as root")
        } catch {
            throw LeadDiscoveryError.noLead(dataDir: dataDir)
        }
        let endpoint: LeadEndpoint
        do {
            endpoint = try APICoding.decode(LeadEndpoint.self, from: bytes)
        } catch {
            throw LeadDiscoveryError.unreadable(path: path, reason: "\(error)")
        }
        if let why = whyNotRunning(endpoint) {
            throw LeadDiscoveryError.notRunning(dataDir: dataDir, pid: endpoint.pid, startedAtMs: endpoint.startedAtMs, why: why)
        }
        return endpoint
    }

    /// Why the process lead.json names is not that lead, or nil when it may well be. Errs on the
    /// side of "running": a pid owned by another user answers EPERM, and /proc may hide it.
    public static func whyNotRunning(_ endpoint: LeadEndpoint, procRoot: String = "/proc") -> String? {
        if kill(endpoint.pid, 0) != 0, errno == ESRCH { return "pid \(endpoint.pid) is gone" }
        guard let cmdline = try? FileIO.read(path: "\(procRoot)/\(endpoint.pid)/cmdline", limit: 4096), !cmdline.isEmpty else {
            return nil
        }
        let program = String(decoding: cmdline.prefix(while: { $0 != 0 }), as: UTF8.self)
        let name = program.split(separator: "/").last.map(String.init) ?? program
        return name.hasPrefix("pimesh") ? nil : "pid \(endpoint.pid) is now \(name), not a lead"
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
