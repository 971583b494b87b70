import Crypto
import FoundationEssentials
import Glibc
import PimeshCore
import PimeshStore
import PimeshSystem

/// Checks a snapshot end to end: the manifest's signature, the compressed file's size and
/// SHA-256, the LZ4 frame's own checksum, and the size and SHA-256 of what it decompresses to.
/// Each failure names what did not match.
public enum SnapshotVerifier {
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public struct Report: Sendable {
        public var manifest: SnapshotManifest
        public var manifestPath: String
        public var filePath: String
        public var milliseconds: Double
    }

    /// `path` is the manifest (`.json`) or the compressed file (`.db.lz4`) next to it.
    /// `trustedKeys`: when given, the signing key must be one of them (hex).
    public static func verify(
        _ path: String, trustedKeys: [String]? = nil, restoreTo output: Int32? = nil, progress: (UInt64) -> Void = { _ in }
    ) throws -> Report {
        let started = Clock.monotonicNow()
        let manifestPath = path.hasSuffix(".db.lz4") ? String(path.dropLast(7)) + ".json" : path
        let bytes: [UInt8]
        do {
            bytes = try FileIO.read(path: manifestPath, limit: 1 << 16)
        } catch {
            throw Problem(description: "cannot read the manifest \(manifestPath): \(error)")
        }
        let manifest: SnapshotManifest
        do {
            manifest = try APICoding.decode(SnapshotManifest.self, from: bytes)
        } catch {
            throw Problem(description: "\(manifestPath) is not a snapshot manifest: \(error)")
        }
        try checkSignature(manifest, trustedKeys: trustedKeys)
        let directory = manifestPath.lastIndex(of: "/").map { String(manifestPath[..<$0]) } ?? "."
        guard !manifest.file.contains("/") else { throw Problem(description: "manifest file name \"\(manifest.file)\" has a path") }
        let filePath = directory + "/" + manifest.file
        let (fd, info): (Int32, stat)
        do {
            (fd, info) = try FileIO.openRegular(path: filePath)
        } catch {
            throw Problem(description: "cannot read the snapshot: \(error)")
        }
        defer { close(fd) }
        guard UInt64(info.st_size) == manifest.compressedBytes else {
            throw Problem(description: "\(filePath) has \(info.st_size) bytes, the manifest says \(manifest.compressedBytes)")
        }
        let digest: LZ4Frame.Digest
        do {
            digest = try LZ4Frame.decompress(input: fd, output: output, rawLimit: manifest.rawBytes, progress: progress)
        } catch {
            // A flipped bit usually stops the LZ4 decoder before the end, where the compressed
            // file's SHA-256 would have named what happened: the file changed after it was signed.
            if let whole = sha256(of: fd), whole != manifest.compressedSHA256 {
                throw Problem(
                    description: "\(filePath): SHA-256 of the compressed file does not match the manifest: it was damaged or changed "
                        + "after it was signed (the LZ4 decoder stopped: \(error))")
            }
            throw Problem(description: "\(filePath): \(error)")
        }
        guard Hex.encode(digest.compressedSHA256) == manifest.compressedSHA256 else {
            throw Problem(description: "\(filePath): SHA-256 of the compressed file does not match the manifest")
        }
        guard digest.rawBytes == manifest.rawBytes, Hex.encode(digest.rawSHA256) == manifest.rawSHA256 else {
            throw Problem(description: "\(filePath): the decompressed database does not match the manifest (size or SHA-256)")
        }
        return Report(manifest: manifest, manifestPath: manifestPath, filePath: filePath, milliseconds: (Clock.monotonicNow() - started).milliseconds)
    }

    private static func sha256(of fd: Int32) -> String? {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var offset: off_t = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return Hex.encode(Array(hasher.finalize())) }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            offset += off_t(count)
        }
    }

    public static func checkSignature(_ manifest: SnapshotManifest, trustedKeys: [String]?) throws(Problem) {
        if let trustedKeys, !trustedKeys.contains(manifest.publicKey) {
            throw Problem(
                description: "signed by a key that is not trusted: node \(manifest.nodeID), public key \(manifest.publicKey); "
                    + "if that node is yours, pass --public-key \(manifest.publicKey) (or enroll it with the coordinator)")
        }
        guard NodeKey.nodeID(publicKeyHex: manifest.publicKey) == manifest.nodeID else {
            throw Problem(description: "node id \(manifest.nodeID) does not belong to the manifest's public key")
        }
        guard let signature = Hex.decode(manifest.signature),
            NodeKey.verify(signature: signature, message: manifest.signedText, publicKeyHex: manifest.publicKey)
        else {
            throw Problem(description: "bad signature: the manifest was changed or not signed by node \(manifest.nodeID)")
        }
    }

    /// Verifies `path` while decompressing it into `<directory>/pimesh.db` (temporary name,
    /// fsync, rename), then runs SQLite's integrity check on the result. Refuses to overwrite.
    public static func restore(
        _ path: String, to directory: String, trustedKeys: [String], progress: (UInt64) -> Void = { _ in }
    ) throws -> (Report, String) {
        try FileIO.makeDirectories(directory, mode: 0o700)
        // The database holds every agent's secret, and a directory another user owns or may
        // write into could hold a link that turns the write onto any file (as root, too); so
        // could a link in place of the directory.
        var link = stat()
        if lstat(directory, &link) == 0, link.st_mode & S_IFMT == S_IFLNK {
            throw Problem(description: "cannot restore into \(directory): it is a symbolic link; name the directory itself")
        }
        if let problem = TrustedFile.directoryProblem(directory) { throw Problem(description: "cannot restore into it: \(problem.reason)") }
        let target = directory + "/pimesh.db"
        // A journal left beside would be replayed into the restored database at its first open.
        for name in [target, target + "-wal", target + "-shm", target + "-journal"] where FileIO.linkExists(name) {
            throw Problem(
                description: "\(name) exists; restore into an empty directory (the lead's database and its journals are never overwritten in place)")
        }
        let temporary = target + ".restoring"
        unlink(temporary)  // an earlier restore's, cut short
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.Failure(path: temporary, operation: "create", errno: errno) }
        let report: Report
        do {
            report = try verify(path, trustedKeys: trustedKeys, restoreTo: fd, progress: progress)
            guard fsync(fd) == 0 else { throw FileIO.Failure(path: temporary, operation: "fsync", errno: errno) }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        // link() refuses a database that appeared meanwhile, where rename() would replace it.
        guard Glibc.link(temporary, target) == 0 else {
            let code = errno
            unlink(temporary)
            if code == EEXIST { throw Problem(description: "\(target) appeared during the restore; it is left as it is") }
            throw FileIO.Failure(path: target, operation: "link", errno: code)
        }
        unlink(temporary)
        FileIO.syncDirectory(of: target)
        let integrity = try DatabaseCopy.integrityCheck(target)
        return (report, integrity)
    }
}

extension SnapshotVerifier.Report {
    /// The mark a restore leaves in the restored database, for the next lead's
    /// `snapshot_restored` row (docs/audit.md). `rollbackOf`: the release whose rollback made
    /// the lead restore by itself (MigrationRollback); nil: an operator's `snapshot restore`.
    public func restoreMark(file: String, rollbackOf: String? = nil) -> String {
        return AuditBody.canonical(
            [
                ("snapshot_sequence", "\(manifest.sequence)"), ("snapshot_node", manifest.nodeID),
                ("compressed_sha256", manifest.compressedSHA256), ("file", file),
                ("audit_head_seq", manifest.auditHead.map { "\($0.seq)" } ?? "none"),
                ("audit_head_sha256", manifest.auditHead?.sha256 ?? "none"),
                ("restored_by_uid", "\(getuid())"), ("restored_at_ms", "\(Clock.wallMilliseconds())"),
            ] + (rollbackOf.map { [("rollback_of", $0)] } ?? []))
    }
}
