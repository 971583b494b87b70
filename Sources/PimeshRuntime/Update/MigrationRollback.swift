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
    public static let markFile = "restore-after-rollback.json"
    static let stagingDir = ".rollback-restore"
    public static let setAsideDir = "rolled-back"
    /// Migrated databases kept in `rolled-back/`: each is a whole database, on an SD card.
    public static let keptSetAside = 2

    public struct Mark: Codable, Sendable, Equatable {
        /// The snapshot's compressed file in `spool/` (SnapshotManifest.file).
        public var snapshot: String
        /// The release rolled back; nil when none was current (never, in practice).
        public var release: String?
        public var markedAtMs: Int64
    }

    public struct Refusal: Error, CustomStringConvertible {
        public var description: String
    }

    static func mark(dataDir: String, snapshot: String, release: String?, nowMs: Int64) throws {
        let mark = Mark(snapshot: snapshot, release: release, markedAtMs: nowMs)
        try FileIO.writeAtomically(path: dataDir + "/" + markFile, bytes: try APICoding.encode(mark), mode: 0o600)
    }

    /// The mark a rollback left, if any.
    @_optimize(size)  // cold: at start and in `update status` (the 25 MB budget)
    public static func pendingMark(dataDir: String) throws -> Mark? {
        let path = dataDir + "/" + markFile
        guard FileIO.linkExists(path) else { return nil }
        let mark: Mark
        do {
            mark = try APICoding.decode(Mark.self, from: try FileIO.read(path: path, limit: 4096))
        } catch {
            throw Refusal(description: "\(path): \(error)")
        }
        // Read as a name inside spool/: a path would restore whatever file it named.
        let name = mark.snapshot
        guard !name.isEmpty, !name.contains("/"), name.hasPrefix("snapshot-"), name.hasSuffix(".db.lz4") || name.hasSuffix(".json") else {
            throw Refusal(description: "\(path): key `snapshot`: \"\(name)\" is not a snapshot's file name in spool/ (snapshot-N.db.lz4)")
        }
        return mark
    }

    /// Run at start, holding the data dir's lock and before the store opens. Returns what was
    /// done, for the log and the events; nil when there was nothing to do.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func restoreIfMarked(dataDir: String, knownSchema: Int) throws -> String? {
        guard let mark = try pendingMark(dataDir: dataDir) else { return nil }
        let database = dataDir + "/pimesh.db"
        let staging = dataDir + "/" + stagingDir
        let staged = staging + "/pimesh.db"
        let aside = dataDir + "/" + setAsideDir + "/" + asideName(mark)
        if !FileIO.linkExists(database) {
            // A start cut short after the migrated database was set aside: finish the move.
            guard FileIO.exists(staged) else { return nil }  // LostDatabase says what to do
            return try moveIn(staged, database: database, aside: aside, mark: mark, dataDir: dataDir, detail: "restore finished after an interrupted start")
        }
        let schema = try DatabaseCopy.schemaVersion(database)
        guard schema > knownSchema else {
            // Restored by hand already, or the release never migrated: nothing to take back.
            unlink(dataDir + "/" + markFile)
            return nil
        }
        let release = mark.release.map { "release \($0.prefix(12))" } ?? "the release"
        let failing = "the database has schema \(schema), newer than this pimesh knows (\(knownSchema)), after \(release) was rolled back"
        guard let key = try NodeKey.load(dataDir: dataDir) else {
            throw Refusal(description: "\(failing); no node key to check snapshot \(mark.snapshot) with")
        }
        let snapshot = dataDir + "/spool/" + mark.snapshot
        removeStaging(staging)
        let report: SnapshotVerifier.Report
        do {
            let (verified, integrity) = try SnapshotVerifier.restore(snapshot, to: staging, trustedKeys: [key.publicKeyHex])
            guard integrity == "ok" else { throw Refusal(description: "SQLite's integrity check of the restored copy says: \(integrity)") }
            let restoredSchema = try DatabaseCopy.schemaVersion(staged)
            guard restoredSchema <= knownSchema else {
                throw Refusal(description: "it has schema \(restoredSchema), newer than this pimesh knows too")
            }
            try AuditStore.markRestored(
                databasePath: staged, body: verified.restoreMark(file: snapshot, rollbackOf: mark.release ?? "unknown"))
            // Closed cleanly, SQLite folds its journal back in: a staged database must be one file.
            guard !FileIO.linkExists(staged + "-wal") else { throw Refusal(description: "\(staged)-wal is left after closing it") }
            report = verified
        } catch {
            removeStaging(staging)
            let reason = (error as? Refusal)?.description ?? "\(error)"
            throw Refusal(
                description: "\(failing), and its snapshot \(snapshot) could not be restored: \(reason). "
                    + "Restore one by hand (`pimesh snapshot restore`, docs/pi.md) or run the release that migrated it")
        }
        try FileIO.makeDirectories(dataDir + "/" + setAsideDir, mode: 0o700)
        try rename(database, to: aside)
        return try moveIn(
            staged, database: database, aside: aside, mark: mark, dataDir: dataDir,
            detail: "schema \(schema) after \(release) was rolled back; restored snapshot \(report.manifest.sequence) taken before it migrated")
    }

    /// The migrated database's journals follow it (a WAL beside the restored file would be
    /// replayed into it); then the restored file takes its place.
    private static func moveIn(_ staged: String, database: String, aside: String, mark: Mark, dataDir: String, detail: String) throws -> String {
        for suffix in ["-wal", "-shm", "-journal"] where FileIO.linkExists(database + suffix) {
            try rename(database + suffix, to: aside + suffix)
        }
        try rename(staged, to: database)
        FileIO.syncDirectory(of: database)
        removeStaging(dataDir + "/" + stagingDir)
        unlink(dataDir + "/" + markFile)
        FileIO.syncDirectory(of: database)
        pruneSetAside(dataDir + "/" + setAsideDir)
        let kept = FileIO.exists(aside) ? "; the migrated database, with what was written since the switch, is kept as \(aside)" : ""
        return "database \(detail)\(kept)"
    }

    /// Zero-padded so that names sort by time.
    static func asideName(_ mark: Mark) -> String {
        let digits = String(max(0, mark.markedAtMs))
        return "pimesh-" + String(repeating: "0", count: max(0, 15 - digits.utf8.count)) + digits + "-" + (mark.release.map { String($0.prefix(12)) } ?? "release") + ".db"
    }

    private static func pruneSetAside(_ directory: String) {
        let names = ((try? FileIO.list(directory)) ?? []).filter { $0.hasPrefix("pimesh-") }
        let databases = names.filter { $0.hasSuffix(".db") }.sorted()
        for old in databases.dropLast(keptSetAside) {
            for name in names where name == old || name.hasPrefix(old + "-") { unlink(directory + "/" + name) }
        }
    }

    private static func removeStaging(_ staging: String) {
        for name in (try? FileIO.list(staging)) ?? [] { unlink(staging + "/" + name) }
        rmdir(staging)
    }

    private static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw FileIO.Failure(path: from, operation: "rename to \(to)", errno: errno) }
    }
}
