import Glibc
import PimeshCore
import PimeshStore
import PimeshSystem

/// Takes a snapshot of the lead's database into the spool: `VACUUM INTO` a staging copy in the
/// run dir (tmpfs on a Pi: the uncompressed copy never touches the SD card), LZ4 it into the
/// spool under a temporary name, fsync, rename, then write the signed manifest the same way.
public struct SnapshotMaker: Sendable {
    public let databasePath: String
    public let stagingDirectory: String
    public let spool: SnapshotSpool
    public let key: NodeKey
    /// The lead passes its node score, which the coordinator shows beside each node.
    public let nodeScore: @Sendable () -> Int?

    public init(
        databasePath: String, stagingDirectory: String, spool: SnapshotSpool, key: NodeKey, nodeScore: @escaping @Sendable () -> Int? = { nil }
    ) {
        self.databasePath = databasePath
        self.stagingDirectory = stagingDirectory
        self.spool = spool
        self.key = key
        self.nodeScore = nodeScore
    }

    public struct Made: Sendable {
        public var entry: SnapshotSpool.Entry
        public var dropped: [SnapshotSpool.Entry]
        public var copyMs: Double
        public var compressMs: Double
    }

    public func create(progress: (UInt64) -> Void = { _ in }) throws -> Made {
        try FileIO.makeDirectories(stagingDirectory, mode: 0o700)
        return try spool.locked {
            spool.recover()
            let sequence = spool.nextSequence()
            let staging = stagingDirectory + "/snapshot-\(sequence)-\(getpid()).db"
            unlink(staging)
            defer { unlink(staging) }
            let started = Clock.monotonicNow()
            let schemaVersion = try DatabaseCopy.vacuum(databasePath, into: staging)
            let copied = Clock.monotonicNow()
            // The manifest carries the copy's newest audit head (docs/audit.md): the lead seals one
            // just before; a snapshot taken by the CLI carries the last one the lead sealed.
            let auditHead = schemaVersion >= AuditStore.firstSchemaVersion
                ? try AuditStore(database: try Database(path: staging, readOnly: true)).newestHead() : nil

            let fileName = SnapshotManifest.fileName(sequence: sequence)
            let finalPath = spool.directory + "/" + fileName
            let temporary = spool.directory + "/.tmp-" + fileName
            let input = open(staging, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else { throw FileIO.Failure(path: staging, operation: "open", errno: errno) }
            defer { close(input) }
            // recover() above removed what a crash left: O_EXCL creates a new file and never
            // follows a link planted under its name.
            let output = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard output >= 0 else { throw FileIO.Failure(path: temporary, operation: "create", errno: errno) }
            let digest: LZ4Frame.Digest
            do {
                digest = try LZ4Frame.compress(input: input, output: output, progress: progress)
                guard fsync(output) == 0 else { throw FileIO.Failure(path: temporary, operation: "fsync", errno: errno) }
                close(output)
            } catch {
                close(output)
                unlink(temporary)
                throw error
            }
            guard rename(temporary, finalPath) == 0 else {
                let code = errno
                unlink(temporary)
                throw FileIO.Failure(path: finalPath, operation: "rename", errno: code)
            }
            let compressed = Clock.monotonicNow()

            var manifest = SnapshotManifest(
                nodeID: key.nodeID, sequence: sequence, createdAtMs: Clock.wallMilliseconds(), schemaVersion: schemaVersion,
                file: fileName, rawBytes: digest.rawBytes, compressedBytes: digest.compressedBytes,
                rawSHA256: Hex.encode(digest.rawSHA256), compressedSHA256: Hex.encode(digest.compressedSHA256),
                nodeScore: nodeScore(), publicKey: key.publicKeyHex, signature: "")
            manifest.auditHead = auditHead
            manifest.signature = Hex.encode(try key.sign(manifest.signedText))
            let manifestPath = spool.directory + "/" + SnapshotManifest.manifestName(sequence: sequence)
            try FileIO.writeAtomically(path: manifestPath, bytes: try APICoding.encode(manifest, pretty: true), mode: 0o600)
            try spool.record(sequence: sequence)
            let dropped = spool.enforceBounds()
            return Made(
                entry: SnapshotSpool.Entry(manifest: manifest, manifestPath: manifestPath, filePath: finalPath), dropped: dropped,
                copyMs: (copied - started).milliseconds, compressMs: (compressed - copied).milliseconds)
        }
    }
}
