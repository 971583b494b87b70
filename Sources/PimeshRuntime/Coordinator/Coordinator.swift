import Glibc
import Hummingbird
import Logging
import PimeshAgent
import PimeshCore
import PimeshSnapshot
import ServiceLifecycle

/// `pimesh coordinator`: the upstream receiver of snapshots (DESIGN.md §6). A node must be
/// enrolled (its public key) before its snapshots are taken; each upload's manifest signature is
/// checked against that key, the body is streamed to disk and verified end to end (SHA-256 of
/// both forms, the LZ4 checksum) before it is filed under `<dir>/nodes/<node_id>/` and indexed.
/// The answer carries the SHA-256 the coordinator computed: the node's confirmation.
public struct Coordinator: Sendable {
    public struct Settings: Sendable {
        public var directory: String
        public var host: String
        public var port: Int
        public var maxSnapshotBytes: UInt64

        public init(directory: String, host: String = "127.0.0.1", port: Int = 7430, maxSnapshotBytes: UInt64 = 4 << 30) {
            self.directory = directory
            self.host = host
            self.port = port
            self.maxSnapshotBytes = maxSnapshotBytes
        }
    }

    public static let endpointFile = "coordinator.json"

    public struct Endpoint: Codable, Sendable {
        public var host: String
        public var port: Int
        public var pid: Int32
    }

    let settings: Settings
    let logger: Logger

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    public func run() async throws {
        let directory = settings.directory
        try FileIO.makeDirectories(directory, mode: 0o700)
        try FileIO.makeDirectories(directory + "/nodes", mode: 0o755)
        try FileIO.makeDirectories(directory + "/incoming", mode: 0o700)
        let token = try NodeToken.loadOrCreate(dataDir: directory)
        let store = try CoordinatorStore(path: directory + "/coordinator.db")
        let router = Router(context: BasicRequestContext.self)
        router.get("/healthz") { _, _ in JSONResponse.make(status: .ok, ["status": "ok"]) }
        // Nodes authenticate by their enrolled key's signature, not by the token.
        router.put("/v1/nodes/:node/snapshots/:sequence") { request, context in
            await APIRouter.handle { try await receive(request, context: context, store: store) }
        }
        let operators = router.group("v1").add(middleware: BearerTokenMiddleware(token: Array(token.utf8)))
        operators.get("nodes") { _, _ in
            await APIRouter.handle {
                JSONResponse.make(status: .ok, FleetList(nodes: try store.fleet(nowMs: Clock.wallMilliseconds())))
            }
        }
        let settings = settings
        let logger = logger
        let app = Application(
            router: router, configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "pimesh-coordinator"),
            onServerRunning: { channel in
                let endpoint = Endpoint(host: settings.host, port: channel.localAddress?.port ?? settings.port, pid: getpid())
                try? FileIO.writeAtomically(path: directory + "/" + Self.endpointFile, bytes: try APICoding.encode(endpoint, pretty: true))
                logger.info("coordinator ready", metadata: ["address": "\(settings.host):\(endpoint.port)", "dir": "\(directory)"])
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer { FileIO.remove(directory + "/" + Self.endpointFile) }
        try await group.run()
    }

    private func receive(_ request: Request, context: BasicRequestContext, store: CoordinatorStore) async throws -> Response {
        let nodeID = context.parameters.get("node") ?? ""
        guard let sequence = context.parameters.get("sequence").flatMap(UInt64.init) else {
            throw APIError(status: .badRequest, message: "the sequence in the path is not a number", field: "sequence")
        }
        guard let header = request.headers.first(where: { $0.name.canonicalName == "pimesh-manifest" })?.value,
            let bytes = Hex.decode(header),
            let manifest = try? APICoding.decode(SnapshotManifest.self, from: bytes)
        else {
            throw APIError(status: .badRequest, message: "the Pimesh-Manifest header is missing or is not a hex-encoded snapshot manifest")
        }
        guard manifest.nodeID == nodeID, manifest.sequence == sequence else {
            throw APIError(status: .badRequest, message: "the manifest is for \(manifest.nodeID) #\(manifest.sequence), the path for \(nodeID) #\(sequence)")
        }
        guard let key = try store.publicKey(of: nodeID) else {
            throw APIError(
                status: .forbidden,
                message: "node \(nodeID) is not enrolled; on the coordinator: pimesh coordinator enroll \(manifest.publicKey)")
        }
        do {
            try SnapshotVerifier.checkSignature(manifest, trustedKeys: [key])
        } catch {
            throw APIError(status: .forbidden, message: "refused: \(error)")
        }
        if let existing = try store.received(nodeID: nodeID, sequence: sequence) {
            for try await _ in request.body {}
            guard existing == manifest.compressedSHA256 else {
                throw APIError(status: .conflict, message: "\(nodeID) #\(sequence) was received before with a different SHA-256")
            }
            return JSONResponse.make(status: .ok, Receipt(nodeID: nodeID, sequence: sequence, compressedSHA256: existing))
        }
        // Stream the body into a directory of its own, under the names the manifest uses.
        let staging = settings.directory + "/incoming/" + AgentID.random().description
        try FileIO.makeDirectories(staging, mode: 0o700)
        defer { Self.removeTree(staging) }
        let filePath = staging + "/" + manifest.file
        let fd = open(filePath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0, !manifest.file.contains("/") else { throw APIError(status: .badRequest, message: "bad file name in the manifest") }
        var received: UInt64 = 0
        do {
            for try await buffer in request.body {
                received += UInt64(buffer.readableBytes)
                guard received <= settings.maxSnapshotBytes else {
                    throw APIError(status: .contentTooLarge, message: "a snapshot may be at most \(settings.maxSnapshotBytes) bytes")
                }
                try buffer.withUnsafeReadableBytes { bytes in try LZ4Frame.writeAll(fd, bytes) }
            }
            fsync(fd)
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        try FileIO.writeAtomically(path: staging + "/" + SnapshotManifest.manifestName(sequence: sequence), bytes: bytes, mode: 0o644)
        do {
            _ = try SnapshotVerifier.verify(staging + "/" + SnapshotManifest.manifestName(sequence: sequence), trustedKeys: [key])
        } catch {
            logger.warning("snapshot refused", metadata: ["node": "\(nodeID)", "sequence": "\(sequence)", "why": "\(error)"])
            throw APIError(status: .unprocessableContent, message: "refused: \(error)")
        }
        let nodeDirectory = settings.directory + "/nodes/" + nodeID
        try FileIO.makeDirectories(nodeDirectory, mode: 0o755)
        let target = nodeDirectory + "/" + manifest.file
        guard rename(filePath, target) == 0,
            rename(staging + "/" + SnapshotManifest.manifestName(sequence: sequence), nodeDirectory + "/" + SnapshotManifest.manifestName(sequence: sequence)) == 0
        else { throw APIError(status: .internalServerError, message: "cannot file the snapshot: \(String(cString: strerror(errno)))") }
        FileIO.syncDirectory(of: target)
        try store.record(manifest, path: target, receivedAtMs: Clock.wallMilliseconds())
        logger.info("snapshot received", metadata: ["node": "\(nodeID)", "sequence": "\(sequence)", "bytes": "\(received)"])
        return JSONResponse.make(status: .created, Receipt(nodeID: nodeID, sequence: sequence, compressedSHA256: manifest.compressedSHA256))
    }

    struct Receipt: Encodable {
        var nodeID: String
        var sequence: UInt64
        /// What the coordinator computed over what it stored (equal to the manifest's, or it refused).
        var compressedSHA256: String

        enum CodingKeys: String, CodingKey {
            case nodeID = "nodeId"
            case sequence
            case compressedSHA256 = "compressedSha256"
        }
    }

    static func removeTree(_ path: String) {
        for name in (try? FileIO.list(path)) ?? [] { unlink(path + "/" + name) }
        rmdir(path)
    }
}
