import Glibc
import PimeshAgent
import PimeshCore
import PimeshSnapshot
import PimeshStore
import PimeshSystem

/// A rollback across a schema migration (docs/pi.md, "Update and rollback"). Switching the
/// binary back is not enough: the older binary refuses the migrated database, so the node would
/// stay down until someone restored by hand. The rollback leaves a mark naming the snapshot the
/// updater took before the switch; the next lead that finds its database newer than it knows
/// restores that snapshot before it opens the store, and keeps the migrated database aside
/// (what was written since the switch is in it, readable by the release that wrote it).
public enum MigrationRollback {
    public static let markFile = "restore-after-rollback"
    static let stagingDir = ".rollback-restore"
    public static let setAsideDir = "rolled-back"
    /// Migrated databases kept in `rolled-back/`: each is a whole database, on an SD card.
    public static let keptSetAside = 2

    /// One line of `key=value` pairs (AuditBody), as the audit row that follows it.
    public struct Mark: Sendable, Equatable {
        /// The snapshot's compressed file in `spool/` (SnapshotManifest.file).
        public var snapshot: String
        /// The release rolled back; nil when none was current (never, in practice).
        public var release: String?
        public var markedAtMs: Int64
    }

    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
    }

    @_optimize(size)  // cold: a rollback (the 25 MB budget)
    static func mark(dataDir: String, snapshot: String, release: String?, nowMs: Int64) throws {
        let text = AuditBody.canonical([("snapshot", snapshot), ("release", release ?? "none"), ("marked_at_ms", "\(nowMs)")]) + "\n"
        try FileIO.writeAtomically(path: dataDir + "/" + markFile, bytes: Array(text.utf8), mode: 0o600)
    }

    /// The mark a rollback left, if any.
    @_optimize(size)  // cold: at start and in `update status` (the 25 MB budget)
    public static func pendingMark(dataDir: String) throws -> Mark? {
        let path = dataDir + "/" + markFile
        guard FileIO.linkExists(path) else { return nil }
        let text = String(decoding: try FileIO.read(path: path, limit: 4096), as: UTF8.self)
        let pairs = AuditBody.parse(String(text.utf8.last == 10 ? text.dropLast() : text[...])) ?? []
        let fields = Dictionary(pairs, uniquingKeysWith: { (first: String, _: String) in first })
        // Read as a name inside spool/: a path would restore whatever file it named. Each value
        // also goes into a file name, the log and `update status`: only the forms a rollback writes.
        func refuse(_ key: String, _ what: String) -> Refusal {
            Refusal(description: "\(path): key `\(key)`: \((fields[key] ?? "").debugDescription) is not \(what)")
        }
        guard let name = fields["snapshot"], isSnapshotFile(name) else {
            throw refuse("snapshot", "a snapshot's file name in spool/ (snapshot-N.db.lz4)")
        }
        let release = fields["release"] ?? "none"
        guard release == "none" || ReleaseStore.isDigest(release) else { throw refuse("release", "a release's SHA-256 (64 hex digits)") }
        guard let markedAtMs = fields["marked_at_ms"].flatMap({ Int64($0) }), markedAtMs >= 0 else {
            throw refuse("marked_at_ms", "a time in milliseconds")
        }
        return Mark(snapshot: name, release: release == "none" ? nil : release, markedAtMs: markedAtMs)
    }

    /// `snapshot-<digits>.db.lz4` or `.json`, as SnapshotManifest names them.
    static func isSnapshotFile(_ name: String) -> Bool {
        let suffix = name.hasSuffix(".db.lz4") ? 7 : name.hasSuffix(".json") ? 5 : 0
        guard suffix > 0, name.hasPrefix("snapshot-") else { return false }
        let digits = name.utf8.dropFirst(9).dropLast(suffix)
        return !digits.isEmpty && digits.allSatisfy { (48...57).contains($0) }
    }

    /// Run at start, holding the data dir's lock and before the store opens. Returns what was
    /// done, for the log and the events; nil when there was nothing to do. `beforeRestore` runs
    /// before the slow part (decompressing, hashing, checking: a minute or more on a Pi's SD
    /// card), to tell systemd the start takes longer.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    public static func restoreIfMarked(dataDir: String, knownSchema: Int, beforeRestore: () -> Void = {}) throws -> String? {
        let markPath = dataDir + "/" + markFile
        guard FileIO.linkExists(markPath) else { return nil }
        let database = dataDir + "/pimesh.db"
        let staging = dataDir + "/" + stagingDir
        let ready = staging + "/pimesh.db.ready"
        if !FileIO.linkExists(database) {
            // A start cut short after the migrated database was set aside: finish the move.
            // Only a copy that was restored, marked and closed whole is ever named `.ready`.
            var info = stat()
            guard lstat(ready, &info) == 0, info.st_mode & S_IFMT == S_IFREG, let mark = try pendingMark(dataDir: dataDir) else {
                return nil  // LostDatabase says what to do
            }
            return try moveIn(ready, database: database, mark: mark, dataDir: dataDir, detail: "restore finished after an interrupted start")
        }
        // An empty file (no lead leaves one) keeps the mark, for whoever brings the database
        // back (LostDatabase says how).
        var info = stat()
        guard stat(database, &info) == 0, info.st_size > 0 else { return nil }
        let schema = try DatabaseCopy.schemaVersion(database)
        guard schema > knownSchema else {
            // Restored by hand already, restored by a start cut short before it dropped the mark,
            // or the release never migrated: nothing to take back, whatever the mark says.
            let mark = try? pendingMark(dataDir: dataDir)
            if let mark, restoredByThisMark(database, mark) {
                return finish(mark, dataDir: dataDir, detail: "restore after the rollback of \(describe(mark)) was finished by a start cut short")
            }
            forget(mark, dataDir: dataDir)
            return nil
        }
        let mark = try pendingMark(dataDir: dataDir)!
        let release = describe(mark)
        let failing = "the database has schema \(schema), newer than this pimesh knows (\(knownSchema)), after \(release) was rolled back"
        guard let key = try NodeKey.load(dataDir: dataDir) else {
            throw Refusal(description: "\(failing); no node key to check snapshot \(mark.snapshot) with")
        }
        let snapshot = dataDir + "/spool/" + mark.snapshot
        let aside = dataDir + "/" + setAsideDir + "/" + asideName(mark)
        // Only a mark written by hand repeats a name; what an earlier rollback kept stays.
        guard !FileIO.linkExists(aside) else {
            throw Refusal(description: "\(failing); \(aside) exists already (an earlier rollback's?): move it away and start again")
        }
        // Before the slow part too: a refused start then costs nothing, however often systemd retries.
        if let holder = holderProblem(database) { throw Refusal(description: "\(failing); \(holder)") }
        FileIO.removeTree(staging)
        beforeRestore()
        let report: SnapshotVerifier.Report
        do {
            let (verified, integrity) = try SnapshotVerifier.restore(snapshot, to: staging, trustedKeys: [key.publicKeyHex])
            let staged = staging + "/pimesh.db"
            guard integrity == "ok" else { throw Refusal(description: "SQLite's integrity check of the restored copy says: \(integrity)") }
            let restoredSchema = try DatabaseCopy.schemaVersion(staged)
            guard restoredSchema <= knownSchema else {
                throw Refusal(description: "it has schema \(restoredSchema), newer than this pimesh knows too")
            }
            try AuditStore.markRestored(
                databasePath: staged, body: verified.restoreMark(file: snapshot, rollbackOf: mark.release ?? "unknown"))
            // Closed cleanly, SQLite folds its journal back in: a staged database must be one file.
            guard !FileIO.linkExists(staged + "-wal") else { throw Refusal(description: "\(staged)-wal is left after closing it") }
            try rename(staged, to: ready)
            report = verified
        } catch {
            FileIO.removeTree(staging)
            let reason = (error as? Refusal)?.description ?? "\(error)"
            throw Refusal(
                description: "\(failing), and its snapshot \(snapshot) could not be restored: \(reason). "
                    + "Restore one by hand (`pimesh snapshot restore`, docs/pi.md) or run the release that migrated it")
        }
        // Its journal folded in, the migrated database is one file to move: a WAL left beside the
        // restored one would be replayed into it.
        let holder = holderProblem(database)
        guard holder == nil, try DatabaseCopy.checkpointAndClose(database) else {
            FileIO.removeTree(staging)
            throw Refusal(description: "\(failing); \(holder ?? "another process has \(database) open (`fuser -v \(database)`): close it and start again")")
        }
        try FileIO.makeDirectories(dataDir + "/" + setAsideDir, mode: 0o700)
        // Journals left by a database once by that name would be replayed into this one.
        for suffix in ["-wal", "-shm", "-journal"] { unlink(aside + suffix) }
        try rename(database, to: aside)
        return try moveIn(
            ready, database: database, mark: mark, dataDir: dataDir,
            detail: "schema \(schema) after \(release) was rolled back; restored snapshot \(report.manifest.sequence) taken before it migrated")
    }

    /// What is left of the migrated database's journals follows it; then the restored file
    /// takes its place.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    private static func moveIn(_ ready: String, database: String, mark: Mark, dataDir: String, detail: String) throws -> String {
        let aside = dataDir + "/" + setAsideDir + "/" + asideName(mark)
        for suffix in ["-wal", "-shm", "-journal"] where FileIO.linkExists(database + suffix) {
            try rename(database + suffix, to: aside + suffix)
        }
        FileIO.syncDirectory(of: aside)
        try rename(ready, to: database)
        FileIO.syncDirectory(of: database)
        return finish(mark, dataDir: dataDir, detail: detail)
    }

    @_optimize(size)  // cold: once at start (the 25 MB budget)
    private static func finish(_ mark: Mark, dataDir: String, detail: String) -> String {
        forget(mark, dataDir: dataDir)
        pruneSetAside(dataDir + "/" + setAsideDir, keeping: asideName(mark))
        let aside = dataDir + "/" + setAsideDir + "/" + asideName(mark)
        let kept = FileIO.exists(aside) ? "; the migrated database, with what was written since the switch, is kept as \(aside)" : ""
        return "database \(detail)\(kept)"
    }

    private static func describe(_ mark: Mark) -> String {
        mark.release.map { "release \($0.prefix(12))" } ?? "the release"
    }

    /// The mark, the staging and the pins go once nothing needs them: the snapshot of an update
    /// still pending keeps its pin (a mark that could not be read named none).
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    private static func forget(_ mark: Mark?, dataDir: String) {
        FileIO.removeTree(dataDir + "/" + stagingDir)
        let store = ReleaseStore(dataDir: dataDir)
        // A pending record that cannot be read may still name a snapshot: every pin stays.
        if !FileIO.linkExists(dataDir + "/" + ReleaseStore.pendingFile) || store.pending != nil,
            let spool = try? SnapshotSpool(directory: dataDir + "/spool")
        {
            spool.unpinAll(except: store.pending?.snapshot)
        }
        unlink(dataDir + "/" + markFile)
        FileIO.syncDirectory(of: dataDir + "/" + markFile)
    }

    /// The restored copy this mark made, moved in by a start that was cut short before it could
    /// drop the mark: no lead has run on it yet, so its restore mark (AuditStore) is still there.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    private static func restoredByThisMark(_ database: String, _ mark: Mark) -> Bool {
        guard let body = try? AuditStore(database: Database(path: database, readOnly: true)).pendingRestore() else { return false }
        let fields = Dictionary(AuditBody.parse(body) ?? [], uniquingKeysWith: { (first: String, _: String) in first })
        return fields["rollback_of"] == (mark.release ?? "unknown") && fields["file"]?.hasSuffix("/spool/" + mark.snapshot) == true
    }

    /// Why the migrated database cannot move now: another process has it open, and would go on
    /// using `pimesh.db-wal` by name, the restored database's by then. A write lease is refused
    /// while any other descriptor, of any user, has the file open, also one that has not read
    /// yet (no lock, no journal). Nil also when the kernel cannot tell (a file system without
    /// leases, a database of another owner): the checkpoint's own check remains.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func holderProblem(_ database: String) -> String? {
        let fd = open(database, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // F_SETLEASE: Glibc's module leaves out what needs _GNU_SOURCE; 1024 on every Linux.
        let setLease: Int32 = 1024
        guard fcntl(fd, setLease, F_WRLCK) != 0 else {
            _ = fcntl(fd, setLease, F_UNLCK)
            return nil
        }
        guard errno == EAGAIN || errno == EBUSY else { return nil }
        return "another process has \(database) open (`fuser -v \(database)`): close it and start again"
    }

    /// Zero-padded so that names sort by time.
    static func asideName(_ mark: Mark) -> String {
        let digits = String(max(0, mark.markedAtMs))
        return "pimesh-" + String(repeating: "0", count: max(0, 15 - digits.utf8.count)) + digits + "-" + (mark.release.map { String($0.prefix(12)) } ?? "release") + ".db"
    }

    /// Keeps the newest `keptSetAside`, always `keeping` (a node whose clock read 1970 at the
    /// rollback names it as the oldest).
    private static func pruneSetAside(_ directory: String, keeping: String) {
        let names = ((try? FileIO.list(directory)) ?? []).filter { $0.hasPrefix("pimesh-") }
        let databases = names.filter { $0.hasSuffix(".db") && $0 != keeping }.sorted()
        let dropped = Set(databases.dropLast(keptSetAside - 1))
        for name in names {
            let stem = name.hasSuffix(".db") ? name : name.firstRange(of: ".db-").map { String(name[..<$0.lowerBound]) + ".db" } ?? name
            if dropped.contains(stem) { unlink(directory + "/" + name) }
        }
    }

    private static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw FileIO.Failure(path: from, operation: "rename to \(to)", errno: errno) }
    }
}
