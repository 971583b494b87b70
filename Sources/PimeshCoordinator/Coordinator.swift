import Dispatch
import Glibc
import Hummingbird
import Logging
import PimeshAgent
import PimeshCore
import PimeshFleetIndex
import PimeshServer
import PimeshSnapshot
import PimeshSystem
import ServiceLifecycle
import Synchronization

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
        /// Uploads received at once from one node, and from all: each holds a descriptor and
        /// a staging file, so an outsider must not be able to open more (issue 12).
        public var maxUploadsPerNode: Int
        public var maxUploads: Int
        /// Connections held at once; past it the coordinator stops accepting until one closes,
        /// so that idle or half-sent requests cannot use up its descriptors and memory.
        public var maxConnections: Int
        /// A connection that sends nothing this long is closed.
        public var idleTimeoutS: Int
        /// Each node's newest snapshots kept, by count and by compressed bytes (the newest always
        /// stays): older ones are deleted as new ones are filed, so that no node, hostile or
        /// not, fills the archive the whole fleet shares.
        public var keepSnapshots: Int
        public var keepBytes: UInt64
        /// The address of a TLS proxy in front: its requests are counted by the client address
        /// it puts last in X-Forwarded-For, not as one peer for the whole fleet.
        public var trustedProxy: String?

        public init(
            directory: String, host: String = "127.0.0.1", port: Int = 7430, maxSnapshotBytes: UInt64 = 4 << 30,
            maxUploadsPerNode: Int = 2, maxUploads: Int = 32, maxConnections: Int = 256, idleTimeoutS: Int = 30,
            keepSnapshots: Int = 1000, keepBytes: UInt64 = 16 << 30, trustedProxy: String? = nil
        ) {
            self.trustedProxy = trustedProxy
            self.keepSnapshots = keepSnapshots
            self.keepBytes = keepBytes
            self.directory = directory
            self.host = host
            self.port = port
            self.maxSnapshotBytes = maxSnapshotBytes
            self.maxUploadsPerNode = maxUploadsPerNode
            self.maxUploads = maxUploads
            self.maxConnections = maxConnections
            self.idleTimeoutS = idleTimeoutS
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
    let uploads: UploadSlots
    /// Incident bodies being read at once: each is buffered (up to `maxIncidentBytes`) before
    /// its signature can be checked.
    let incidentReads: UploadSlots

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        uploads = UploadSlots(perKey: settings.maxUploadsPerNode, keyName: "node", total: settings.maxUploads)
        incidentReads = UploadSlots(perKey: Self.incidentReadsPerAddress, keyName: "address", total: settings.maxUploads)
    }

    public func run() async throws {
        let directory = settings.directory
        try FileIO.makeDirectories(directory, mode: 0o700)
        // Snapshots hold every agent's secret: the archive is the coordinator's alone.
        umask(0o077)
        try FileIO.makeDirectories(directory + "/nodes", mode: 0o700)
        let lock = try Self.lockDirectory(directory)
        defer { close(lock) }
        // What uploads cut short by a crash or kill -9 left: no other coordinator serves DIR
        // (the lock), so nothing in it is being written.
        FileIO.removeTree(directory + "/incoming")
        try FileIO.makeDirectories(directory + "/incoming", mode: 0o700)
        // What an older coordinator, or `enroll` under the operator's umask, left more open.
        for path in [directory, directory + "/nodes", directory + "/incoming"] { PrivateFiles.tighten(path, to: 0o700, logger: logger) }
        PrivateFiles.tightenDatabase(directory + "/coordinator.db", logger: logger)
        try PrivateFiles.checkSecret(directory + "/" + LeadEndpoint.tokenFileName)
        let token = try SecretToken.loadOrCreate(path: directory + "/" + LeadEndpoint.tokenFileName)
        // Lets a node enroll itself at first boot (pimesh-image --coordinator): it can add
        // nodes and nothing else, so an image may carry it where the operator token may not go.
        try PrivateFiles.checkSecret(directory + "/" + Self.enrollTokenFile)
        let enrollToken = try SecretToken.loadOrCreate(path: directory + "/" + Self.enrollTokenFile)
        let store = try CoordinatorStore(path: directory + "/coordinator.db")
        try sweepPruned(store)
        let router = Router(context: CoordinatorRequestContext.self)
        router.get("/healthz") { _, _ in JSONResponse.make(status: .ok, ["status": "ok"]) }
        // Nodes authenticate by their enrolled key's signature, not by the token.
        router.put("/v1/nodes/:node/snapshots/:sequence") { request, context in
            await APIError.answering { try await answeringFullDisk(store) { try await receive(request, context: context, store: store) } }
        }
        router.put("/v1/nodes/:node/incidents/:id") { request, context in
            await APIError.answering { try await answeringFullDisk(store) { try await receiveIncident(request, context: context, store: store) } }
        }
        router.group("v1/enrollments").add(middleware: CoordinatorTokenMiddleware(token: Array(enrollToken.utf8), file: Self.enrollTokenFile))
            .put(":node") { request, context in
                await APIError.answering { try await enroll(request, context: context, store: store) }
            }
        let operators = router.group("v1").add(middleware: CoordinatorTokenMiddleware(token: Array(token.utf8), file: LeadEndpoint.tokenFileName))
        operators.get("incidents") { _, _ in
            await APIError.answering {
                let incidents = try store.incidents(limit: Self.maxListedIncidents)
                let byKey = Dictionary(incidents.map { ("\($0.nodeID)#\($0.id)", $0) }, uniquingKeysWith: { (first: FleetIncident, _: FleetIncident) in first })
                let groups = FleetIncidents.group(incidents.map { FleetIncidents.Entry(node: $0.nodeID, id: $0.id, openedMs: $0.openedMs) })
                    .map { $0.compactMap { byKey["\($0.node)#\($0.id)"] } }.reversed()
                return JSONResponse.make(status: .ok, FleetIncidentList(groups: Array(groups)))
            }
        }
        operators.get("nodes") { _, _ in
            await APIError.answering {
                JSONResponse.make(status: .ok, FleetList(nodes: try store.fleet(nowMs: Clock.wallMilliseconds())))
            }
        }
        operators.get("nodes/:node/audit-heads") { _, context in
            await APIError.answering {
                let nodeID = context.parameters.get("node") ?? ""
                guard Self.isNodeID(nodeID), let key = try store.publicKey(of: nodeID) else {
                    throw APIError(status: .notFound, message: "no enrolled node \(nodeID)", field: "node")
                }
                return JSONResponse.make(status: .ok, AuditHeadList(nodeID: nodeID, publicKey: key, heads: try store.auditHeads(of: nodeID)))
            }
        }
        let settings = settings
        let logger = logger
        let app = Application(
            router: router, server: RequestDeadline.http1(idleTimeoutS: settings.idleTimeoutS, requestTimeoutS: nil),
            configuration: .init(
                address: .hostname(settings.host, port: settings.port), serverName: "pimesh-coordinator",
                availableConnectionsDelegate: .maximum(settings.maxConnections, logger: logger)),
            onServerRunning: { channel in
                let endpoint = Endpoint(host: settings.host, port: channel.localAddress?.port ?? settings.port, pid: getpid())
                try? FileIO.writeAtomically(path: directory + "/" + Self.endpointFile, bytes: try APICoding.encode(endpoint, pretty: true), mode: 0o600)
                logger.info("coordinator ready", metadata: ["address": "\(settings.host):\(endpoint.port)", "dir": "\(directory)"])
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        defer { FileIO.remove(directory + "/" + Self.endpointFile) }
        try await group.run()
    }

    public struct AlreadyServed: Error, CustomStringConvertible {
        public var description: String
    }

    /// One coordinator per directory: a second would empty the first's `incoming/` at start,
    /// and both would file the same sequences. The lock is held until the process ends.
    static func lockDirectory(_ directory: String) throws -> Int32 {
        let path = directory + "/coordinator.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.Failure(path: path, operation: "open", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw AlreadyServed(description: "another pimesh-coordinator serves \(directory) (it holds \(path)); stop it first, or give this one another --dir")
            }
            throw FileIO.Failure(path: path, operation: "lock", errno: code)
        }
        return fd
    }

    /// A full disk is the operator's to fix and the node's to retry once it is (it keeps what it
    /// sent): 507 says both, where the bare write error answered 500. Nothing of the request stays.
    private func answeringFullDisk(_ store: CoordinatorStore, _ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let failure as PimeshSystem.FileIO.Failure where failure.errno == ENOSPC || failure.errno == EDQUOT {
            throw fullDisk(store)
        } catch where store.database.isOutOfSpace(error) {
            throw fullDisk(store)
        }
    }

    private func fullDisk(_ store: CoordinatorStore) -> APIError {
        logger.error("the coordinator's disk is full", metadata: ["free": "\(store.database.freeBytes.map(String.init) ?? "?") bytes", "dir": "\(settings.directory)"])
        return APIError(status: .insufficientStorage, message: "the coordinator's disk is full; nothing was kept: retry later", retryAfterSeconds: 60)
    }

    /// `node-` and 16 hex digits: what `NodeKey.nodeID` makes.
    static func isNodeID(_ text: String) -> Bool {
        let digits = text.utf8.dropFirst(5)
        return text.hasPrefix("node-") && digits.count == 16 && digits.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    public static let enrollTokenFile = "enroll-token"
    /// Enrolled nodes at most: the enroll token travels on SD cards, so whoever copies one must
    /// not be able to grow the table without end.
    static let maxEnrolledNodes = 10_000

    /// `PUT /v1/enrollments/<node_id>` with the enroll token: the node proves it holds the key it
    /// enrolls by signing `pimesh-enroll-v1 <public_key>` with it.
    private func enroll(_ request: Request, context: CoordinatorRequestContext, store: CoordinatorStore) async throws -> Response {
        let nodeID = context.parameters.get("node") ?? ""
        var body: [UInt8] = []
        for try await buffer in request.body {
            body += buffer.readableBytesView
            guard body.count <= 1024 else { throw APIError(status: .contentTooLarge, message: "an enrollment is at most 1024 bytes") }
        }
        let enrollment = try DecodingProblem.decode(NodeEnrollment.self, from: body, what: "the enrollment ({\"public_key\", \"signature\"})")
        let publicKey = enrollment.publicKey.lowercased()
        guard let keyBytes = Hex.decode(publicKey), keyBytes.count == 32 else {
            throw APIError(status: .badRequest, message: "public_key is not 64 hex digits", field: "public_key")
        }
        if let weakness = Ed25519Encoding.weakness(of: keyBytes) {
            throw APIError(status: .badRequest, message: "public_key cannot be trusted: \(weakness)", field: "public_key")
        }
        guard NodeKey.nodeID(publicKeyHex: publicKey) == nodeID else {
            throw APIError(status: .badRequest, message: "the path names \(nodeID), the key is \(NodeKey.nodeID(publicKeyHex: publicKey))", field: "node")
        }
        guard let signature = Hex.decode(enrollment.signature.lowercased()),
            NodeKey.verify(signature: signature, message: NodeEnrollment.signedMessage(publicKey: publicKey), publicKeyHex: publicKey)
        else {
            throw APIError(status: .forbidden, message: "the signature is not made by that key", field: "signature")
        }
        if try store.publicKey(of: nodeID) != nil {
            return JSONResponse.make(status: .ok, ["node_id": nodeID, "enrolled": "already"])
        }
        guard try store.enrolledKeys().count < Self.maxEnrolledNodes else {
            throw APIError(status: .conflict, message: "the fleet holds \(Self.maxEnrolledNodes) nodes, the most this coordinator enrolls")
        }
        try store.enroll(publicKey: publicKey, atMs: Clock.wallMilliseconds())
        logger.info("node enrolled itself", metadata: ["node": "\(nodeID)"])
        return JSONResponse.make(status: .created, ["node_id": nodeID, "enrolled": "now"])
    }

    /// An upload may take `uploadGraceS` and one second for each `slowestUploadBytesPerSecond`.
    static let uploadGraceS: Int64 = 120
    static let slowestUploadBytesPerSecond: UInt64 = 16 << 10


    static let incidentReadS: Int64 = 30
    /// Incident bodies read at once from one address: enough for a few nodes behind one NAT,
    /// few enough that one outsider holds a small share of all of them.
    static let incidentReadsPerAddress = 4

    static let maxListedIncidents = 1000
    static let maxIncidentBytes = 256 << 10

    /// A node's incident, signed with its enrolled key; stored (newest 500 per node) for the
    /// fleet view.
    private func receiveIncident(_ request: Request, context: CoordinatorRequestContext, store: CoordinatorStore) async throws -> Response {
        let nodeID = context.parameters.get("node") ?? ""
        guard Self.isNodeID(nodeID) else {
            throw APIError(status: .badRequest, message: "\"\(nodeID)\" is not a node id (node- and 16 hex digits)", field: "node")
        }
        let idText = context.parameters.get("id") ?? ""
        guard idText.utf8.count <= 18, let id = Int64(idText), id > 0 else {
            throw APIError(status: .badRequest, message: "the incident id in the path is not a positive number", field: "id")
        }
        guard let header = request.headers.first(where: { $0.name.canonicalName == "pimesh-signature" })?.value,
            header.utf8.count <= 256, let signature = Hex.decode(header)
        else {
            throw APIError(status: .badRequest, message: "the Pimesh-Signature header is missing or is not hex", field: "signature")
        }
        guard let key = try store.publicKey(of: nodeID) else {
            throw APIError(status: .forbidden, message: "node \(nodeID) is not enrolled")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > Self.maxIncidentBytes {
            throw APIError(status: .contentTooLarge, message: "an incident may be at most \(Self.maxIncidentBytes) bytes")
        }
        // Counted by the peer's address, not by the node the path names: anyone who knows a
        // node id (it is in every URL and log) could otherwise hold that node's slots with
        // bodies that trickle, and keep its incidents out.
        let peer = PeerAddress.key(
            peer: context.peer, forwardedFor: request.headers[values: PeerAddress.forwardedFor], trustedProxy: settings.trustedProxy)
        try incidentReads.acquire(key: peer, what: "incidents")
        defer { incidentReads.release(key: peer) }
        // Its slot is taken before the signature can be checked: a body that trickles in (each
        // byte resets the idle timeout) would hold it for as long as it liked.
        let deadline = Clock.monotonicNow() + .seconds(Self.incidentReadS)
        var body: [UInt8] = []
        for try await buffer in request.body {
            guard Clock.monotonicNow() < deadline else {
                throw APIError(status: .requestTimeout, message: "an incident must arrive within \(Self.incidentReadS) s")
            }
            body += buffer.readableBytesView
            guard body.count <= Self.maxIncidentBytes else {
                throw APIError(status: .contentTooLarge, message: "an incident may be at most \(Self.maxIncidentBytes) bytes")
            }
        }
        guard NodeKey.verify(signature: signature, message: body, publicKeyHex: key) else {
            throw APIError(status: .forbidden, message: "refused: the signature does not match \(nodeID)'s enrolled key")
        }
        let incident = try DecodingProblem.decode(Incident.self, from: body, what: "the incident")
        guard incident.id == id else { throw APIError(status: .badRequest, message: "the body is incident \(incident.id), the path \(id)", field: "id") }
        if let (field, reason) = incident.implausibleField {
            throw APIError(status: .badRequest, message: "the incident's \(field) is refused: \(reason)", field: field)
        }
        let text = String(decoding: body, as: UTF8.self)
        let saved = try await Blocking.run {
            try store.saveIncident(nodeID: nodeID, incident, body: text, receivedAtMs: Clock.wallMilliseconds())
        }
        guard saved else {
            // A signed body sent again after a newer one (a replay) must not turn the fleet's view back.
            throw APIError(status: .conflict, message: "\(nodeID) sent a later version of incident \(incident.id) already; this one is older")
        }
        return JSONResponse.make(status: .ok, ["node": nodeID, "incident": incident.name, "state": incident.state.rawValue])
    }

    /// Every check that needs no disk comes first (issue 12: a manifest `file` of `../../x`
    /// once created that file before the 400, and a later sequence could overwrite sequence 1).
    private func receive(_ request: Request, context: CoordinatorRequestContext, store: CoordinatorStore) async throws -> Response {
        let nodeID = context.parameters.get("node") ?? ""
        guard Self.isNodeID(nodeID) else {
            throw APIError(status: .badRequest, message: "\"\(nodeID)\" is not a node id (node- and 16 hex digits)", field: "node")
        }
        let sequenceText = context.parameters.get("sequence") ?? ""
        // The index keeps sequences as SQLite integers: 2^63 and above do not fit.
        guard sequenceText.utf8.count <= 19, sequenceText.utf8.allSatisfy({ (48...57).contains($0) }), let sequence = UInt64(sequenceText),
            sequence > 0, sequence <= UInt64(Int64.max)
        else {
            throw APIError(status: .badRequest, message: "the sequence in the path is not a number from 1 to 2^63 - 1", field: "sequence")
        }
        guard let header = request.headers.first(where: { $0.name.canonicalName == "pimesh-manifest" })?.value,
            header.utf8.count <= RequestDeadline.maxHeadLineBytes, let bytes = Hex.decode(header)
        else {
            throw APIError(
                status: .badRequest, message: "the Pimesh-Manifest header is missing or is not hex (at most \(RequestDeadline.maxHeadLineBytes) digits)")
        }
        let manifest = try DecodingProblem.decode(SnapshotManifest.self, from: bytes, what: "the manifest (Pimesh-Manifest)")
        if let (field, reason) = manifest.implausibleField {
            throw APIError(status: .badRequest, message: "the manifest's \(field) is refused: \(reason)", field: field)
        }
        guard manifest.nodeID == nodeID, manifest.sequence == sequence else {
            throw APIError(status: .badRequest, message: "the manifest is for \(manifest.nodeID) #\(manifest.sequence), the path for \(nodeID) #\(sequence)")
        }
        guard manifest.file == SnapshotManifest.fileName(sequence: sequence) else {
            throw APIError(
                status: .badRequest, message: "the manifest names file \"\(manifest.file)\"; sequence \(sequence) must be \(SnapshotManifest.fileName(sequence: sequence))",
                field: "file")
        }
        guard manifest.compressedBytes <= settings.maxSnapshotBytes else {
            throw APIError(status: .contentTooLarge, message: "a snapshot may be at most \(settings.maxSnapshotBytes) bytes", field: "compressed_bytes")
        }
        // Verifying decompresses and hashes raw_bytes: a small body that claims a huge database
        // would hold a verification thread for as long as that takes.
        guard manifest.rawBytes <= settings.maxSnapshotBytes else {
            throw APIError(
                status: .contentTooLarge, message: "a snapshot's database may be at most \(settings.maxSnapshotBytes) bytes", field: "raw_bytes")
        }
        if let length = request.headers[.contentLength].flatMap(UInt64.init), length != manifest.compressedBytes {
            throw APIError(
                status: .badRequest, message: "Content-Length is \(length) but the manifest says \(manifest.compressedBytes) bytes", field: "compressed_bytes")
        }
        guard let key = try store.publicKey(of: nodeID) else {
            throw APIError(
                status: .forbidden,
                message: "node \(nodeID) is not enrolled; on the coordinator: pimesh-coordinator enroll \(manifest.publicKey)")
        }
        do {
            try SnapshotVerifier.checkSignature(manifest, trustedKeys: [key])
        } catch {
            throw APIError(status: .forbidden, message: "refused: \(error)")
        }
        let prunedThrough = try store.prunedThrough(nodeID: nodeID)
        guard sequence > prunedThrough else {
            throw APIError(
                status: .gone,
                message: "\(nodeID) #\(sequence) is older than what this coordinator keeps for the node (it let go of #\(prunedThrough) and older)")
        }
        if let existing = try store.received(nodeID: nodeID, sequence: sequence) {
            guard existing == manifest.compressedSHA256 else {
                throw APIError(status: .conflict, message: "\(nodeID) #\(sequence) was received before with a different SHA-256; it is never overwritten")
            }
            return JSONResponse.make(status: .ok, Receipt(nodeID: nodeID, sequence: sequence, compressedSHA256: existing))
        }
        let nodeDirectory = settings.directory + "/nodes/" + nodeID
        let target = nodeDirectory + "/" + manifest.file
        if FileIO.exists(target) {
            throw APIError(status: .conflict, message: "\(nodeID) #\(sequence) is already archived; it is never overwritten")
        }
        try uploads.acquire(key: nodeID, what: "uploads")
        defer { uploads.release(key: nodeID) }
        // Stream the body into a directory of its own, under the names the manifest uses.
        let staging = settings.directory + "/incoming/" + AgentID.random().description
        try FileIO.makeDirectories(staging, mode: 0o700)
        defer { FileIO.removeTree(staging) }
        let filePath = staging + "/" + manifest.file
        let fd = open(filePath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.Failure(path: manifest.file, operation: "stage", errno: errno) }
        var received: UInt64 = 0
        // The idle timeout closes a body that stops; this closes one that trickles, which would
        // hold its slot for as long as it liked. Measured on what arrived, not on the size the
        // manifest declares: a declared 4 GiB would otherwise buy three days.
        var pace = UploadPace(startedAt: Clock.monotonicNow(), grace: .seconds(Self.uploadGraceS), slowestBytesPerSecond: Self.slowestUploadBytesPerSecond)
        do {
            for try await buffer in request.body {
                received += UInt64(buffer.readableBytes)
                guard pace.admits(received: received, at: Clock.monotonicNow()) else {
                    throw APIError(
                        status: .requestTimeout,
                        message: "the upload is slower than \(Self.slowestUploadBytesPerSecond / 1024) KiB/s on average; retry on a better link")
                }
                guard received <= manifest.compressedBytes else {
                    throw APIError(
                        status: .contentTooLarge, message: "the body is longer than the \(manifest.compressedBytes) bytes its manifest declares")
                }
                try buffer.withUnsafeReadableBytes { bytes in try FileIO.writeAll(fd, bytes, path: manifest.file) }
            }
            // fsync and everything after it (decompressing and hashing up to 4 GiB) block: off the
            // event loops and the cooperative pool.
            let synced = try await Blocking.run { fsync(fd) == 0 ? 0 : errno }
            guard synced == 0 else { throw FileIO.Failure(path: manifest.file, operation: "fsync", errno: synced) }
            close(fd)
        } catch {
            close(fd)
            throw error
        }
        guard received == manifest.compressedBytes else {
            throw APIError(
                status: .unprocessableContent, message: "the body has \(received) bytes; its manifest declares \(manifest.compressedBytes)")
        }
        try await Self.verifying { [logger] in
            try FileIO.writeAtomically(path: staging + "/" + SnapshotManifest.manifestName(sequence: sequence), bytes: bytes, mode: 0o600)
            do {
                _ = try SnapshotVerifier.verify(staging + "/" + SnapshotManifest.manifestName(sequence: sequence), trustedKeys: [key])
            } catch {
                logger.warning("snapshot refused", metadata: ["node": "\(nodeID)", "sequence": "\(sequence)", "why": "\(error)"])
                // The node needs the reason, not where the coordinator staged its upload.
                throw APIError(status: .unprocessableContent, message: "refused: " + "\(error)".replacing(staging + "/", with: ""))
            }
            try FileIO.makeDirectories(nodeDirectory, mode: 0o700)
            // link() fails when the target exists: two uploads of one sequence cannot both land.
            guard link(filePath, target) == 0 else {
                if errno == EEXIST { throw APIError(status: .conflict, message: "\(nodeID) #\(sequence) is already archived; it is never overwritten") }
                throw FileIO.Failure(path: manifest.file, operation: "file", errno: errno)
            }
            do {
                guard rename(staging + "/" + SnapshotManifest.manifestName(sequence: sequence), nodeDirectory + "/" + SnapshotManifest.manifestName(sequence: sequence)) == 0
                else { throw FileIO.Failure(path: SnapshotManifest.manifestName(sequence: sequence), operation: "file", errno: errno) }
                FileIO.syncDirectory(of: target)
                try store.record(manifest, path: target, receivedAtMs: Clock.wallMilliseconds())
            } catch {
                // Filed but not indexed, the snapshot would refuse every retry as archived, and the
                // node retries its oldest first: take it back so that a retry can land.
                unlink(target)
                unlink(nodeDirectory + "/" + SnapshotManifest.manifestName(sequence: sequence))
                FileIO.syncDirectory(of: target)
                throw error
            }
            // Filed and indexed: what the node is told. Pruning that fails is the operator's to see.
            do {
                try prune(nodeID, nodeDirectory: nodeDirectory, store: store)
            } catch {
                logger.warning("older snapshots not deleted", metadata: ["node": "\(nodeID)", "error": "\(error)"])
            }
        }
        logger.info("snapshot received", metadata: ["node": "\(nodeID)", "sequence": "\(sequence)", "bytes": "\(received)"])
        return JSONResponse.make(status: .created, Receipt(nodeID: nodeID, sequence: sequence, compressedSHA256: manifest.compressedSHA256))
    }

    /// The node's snapshots past `keepSnapshots` or `keepBytes`, oldest first: out of the index,
    /// then off the disk. The node's newest stays, whatever its size.
    private func prune(_ nodeID: String, nodeDirectory: String, store: CoordinatorStore) throws {
        let pruned = try store.prune(nodeID: nodeID, keep: settings.keepSnapshots, keepBytes: settings.keepBytes)
        guard !pruned.isEmpty else { return }
        for sequence in pruned { deleteArchived(sequence, in: nodeDirectory) }
        FileIO.syncDirectory(of: nodeDirectory + "/.")
        logger.info("older snapshots deleted", metadata: ["node": "\(nodeID)", "sequences": "\(pruned.sorted().map(String.init).joined(separator: ","))"])
    }

    /// Named from the directory, not from the index's `path`, which holds `--dir` as it was
    /// given (relative to where an older `serve` ran).
    private func deleteArchived(_ sequence: UInt64, in nodeDirectory: String) {
        for name in [SnapshotManifest.fileName(sequence: sequence), SnapshotManifest.manifestName(sequence: sequence)] {
            if unlink(nodeDirectory + "/" + name) != 0 && errno != ENOENT {
                logger.warning("cannot delete a pruned snapshot", metadata: ["path": "\(nodeDirectory)/\(name)", "errno": "\(errno)"])
            }
        }
    }

    /// Files that retention let go but a crash left on the disk: every sequence at or below a
    /// node's `pruned_through` (the index names none of them).
    private func sweepPruned(_ store: CoordinatorStore) throws {
        for node in try store.prunedNodes() {
            let nodeDirectory = settings.directory + "/nodes/" + node.nodeID
            for name in (try? FileIO.list(nodeDirectory)) ?? [] {
                guard let sequence = SnapshotManifest.sequence(inName: name), sequence <= node.through else { continue }
                deleteArchived(sequence, in: nodeDirectory)
            }
        }
    }

    /// Verification decompresses and hashes up to `maxSnapshotBytes` (seconds per GiB): one at
    /// a time, on a thread of its own, so that uploads never take the shared pool's threads
    /// from incidents, fsyncs and the index. Others wait their turn, holding their slots.
    private static let verification = DispatchQueue(label: "pimesh-coordinator.verification")

    private static func verifying<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            verification.async { continuation.resume(with: Result { try body() }) }
        }
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

    /// Counts uploads in flight per node and in all.
    final class UploadSlots: Sendable {
        private let counts = Mutex<(perKey: [String: Int], total: Int)>(([:], 0))
        let perKey: Int
        /// What a key is, in the 429: "node", "address".
        let keyName: String
        let total: Int

        init(perKey: Int, keyName: String, total: Int) {
            self.perKey = perKey
            self.keyName = keyName
            self.total = total
        }

        /// Takes a slot for `key`, or refuses with 429 naming `what` is being counted.
        func acquire(key: String, what: String) throws {
            let taken = counts.withLock { counts in
                guard counts.total < total, counts.perKey[key, default: 0] < perKey else { return false }
                counts.total += 1
                counts.perKey[key, default: 0] += 1
                return true
            }
            guard taken else {
                throw APIError(
                    status: .tooManyRequests, message: "too many \(what) at once (at most \(perKey) per \(keyName), \(total) in all); retry later",
                    retryAfterSeconds: 1)
            }
        }

        func release(key: String) {
            counts.withLock { counts in
                counts.total -= 1
                counts.perKey[key, default: 1] -= 1
                if counts.perKey[key] == 0 { counts.perKey[key] = nil }
            }
        }
    }
}
