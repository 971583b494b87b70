import FoundationEssentials
import Glibc
import PimeshSystem

/// The bounded spool of snapshots in the data dir (`<data_dir>/spool`). A snapshot counts only
/// once its manifest exists: the compressed file is written to a temporary name, fsync'd and
/// renamed first, the manifest last (the same way). Whatever a crash or power cut leaves behind
/// (temporary files, a compressed file without its manifest) is removed when the spool opens,
/// so readers only ever see whole snapshots.
public struct SnapshotSpool: Sendable {
    public let directory: String
    public var maxCount: Int
    public var maxBytes: UInt64

    public init(directory: String, maxCount: Int = 8, maxBytes: UInt64 = 256 << 20) throws {
        self.directory = directory
        self.maxCount = max(1, maxCount)
        self.maxBytes = maxBytes
        try FileIO.makeDirectories(directory, mode: 0o700)
    }

    public struct Entry: Sendable, Equatable {
        public var manifest: SnapshotManifest
        public var manifestPath: String
        public var filePath: String
    }

    /// Removes what an interrupted snapshot left; returns what it removed.
    @discardableResult
    public func recover() -> [String] {
        var removed: [String] = []
        let names = (try? FileIO.list(directory)) ?? []
        let manifests = Set(names.filter { $0.hasSuffix(".json") })
        for name in names {
            let isTemporary = name.hasPrefix(".tmp-") || name.contains(".tmp.")
            let orphan = name.hasSuffix(".db.lz4") && !manifests.contains(name.replacing(".db.lz4", with: ".json"))
            let staleMarker = name.contains(".uploaded-") && !manifests.contains(String(name[..<name.firstRange(of: ".uploaded-")!.lowerBound]) + ".json")
            let stalePin = name.hasSuffix(Self.pinSuffix) && !manifests.contains(String(name.dropLast(Self.pinSuffix.utf8.count)) + ".json")
            if isTemporary || orphan || staleMarker || stalePin {
                unlink(directory + "/" + name)
                removed.append(name)
            }
        }
        return removed
    }

    /// Whole snapshots, oldest first. A manifest that does not parse is listed as an error, not hidden.
    public func entries() -> (entries: [Entry], unreadable: [String]) {
        let names = ((try? FileIO.list(directory)) ?? []).filter { $0.hasPrefix("snapshot-") && $0.hasSuffix(".json") }.sorted()
        var entries: [Entry] = []
        var unreadable: [String] = []
        for name in names {
            let path = directory + "/" + name
            guard let bytes = try? FileIO.read(path: path, limit: 1 << 16),
                let manifest = try? APICoding.decode(SnapshotManifest.self, from: bytes)
            else {
                unreadable.append(path)
                continue
            }
            entries.append(Entry(manifest: manifest, manifestPath: path, filePath: directory + "/" + manifest.file))
        }
        return (entries.sorted { $0.manifest.sequence < $1.manifest.sequence }, unreadable)
    }

    /// The next sequence number: one past the newest ever made here (kept in `last-sequence`,
    /// so that dropping old snapshots never reuses a number).
    public func nextSequence() -> UInt64 {
        let recorded = (try? FileIO.readText(path: directory + "/last-sequence")).flatMap {
            UInt64($0.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "")
        } ?? 0
        let newest = entries().entries.last?.manifest.sequence ?? 0
        return max(recorded, newest) + 1
    }

    func record(sequence: UInt64) throws {
        try FileIO.writeAtomically(path: directory + "/last-sequence", bytes: Array("\(sequence)\n".utf8), mode: 0o600)
    }

    static let pinSuffix = ".pinned"

    /// Keeps a snapshot whatever the bounds say, until `unpin`: the one taken before a release
    /// migrates the database, which a rollback restores (MigrationRollback). `file` is the
    /// compressed file's name (SnapshotManifest.file).
    public func pin(_ file: String) throws {
        try FileIO.writeAtomically(path: pinPath(file), bytes: [], mode: 0o600)
    }

    public func unpin(_ file: String) {
        unlink(pinPath(file))
    }

    /// Once no rollback's restore waits, only a pending update's snapshot (`except`) needs a pin.
    public func unpinAll(except file: String? = nil) {
        let kept = file.map(pinPath)
        for name in (try? FileIO.list(directory)) ?? [] where name.hasSuffix(Self.pinSuffix) && directory + "/" + name != kept {
            unlink(directory + "/" + name)
        }
    }

    /// `file`: the compressed file's name or the manifest's.
    private func pinPath(_ file: String) -> String {
        let stem = file.hasSuffix(".db.lz4") ? file.dropLast(7) : file.hasSuffix(".json") ? file.dropLast(5) : file[...]
        return directory + "/" + stem + Self.pinSuffix
    }

    /// Drops the oldest snapshots until the spool is within its count and byte bounds; the
    /// newest and the pinned are always kept. Returns what was dropped, for the log.
    @discardableResult
    public func enforceBounds() -> [Entry] {
        var current = entries().entries
        var dropped: [Entry] = []
        func total() -> UInt64 { current.reduce(0) { $0 + $1.manifest.compressedBytes } }
        while current.count > 1 && (current.count > maxCount || total() > maxBytes) {
            guard let index = current.dropLast().firstIndex(where: { !FileIO.linkExists(pinPath($0.manifest.file)) }) else { break }
            let oldest = current.remove(at: index)
            // Manifest first: without it the file is an orphan that `recover` removes anyway.
            unlink(oldest.manifestPath)
            unlink(oldest.filePath)
            let stem = String(oldest.manifestPath.dropLast(5))
            for name in (try? FileIO.list(directory)) ?? [] where (directory + "/" + name).hasPrefix(stem + ".uploaded-") {
                unlink(directory + "/" + name)
            }
            dropped.append(oldest)
        }
        if !dropped.isEmpty { FileIO.syncDirectory(of: directory + "/x") }
        return dropped
    }

    // MARK: - Uploads

    /// The marker that says `entry` reached `target` and the receiver confirmed its checksum.
    func marker(_ entry: Entry, target: String) -> String {
        String(entry.manifestPath.dropLast(5)) + ".uploaded-" + target
    }

    public func isUploaded(_ entry: Entry, to target: String) -> Bool {
        FileIO.exists(marker(entry, target: target))
    }

    /// Written (fsync'd, renamed) only after the receiver confirmed: a crash before it means one
    /// more upload of the same snapshot after restart, which every receiver takes idempotently.
    public func markUploaded(_ entry: Entry, to target: String, confirmation: String) throws {
        try FileIO.writeAtomically(path: marker(entry, target: target), bytes: Array((confirmation + "\n").utf8), mode: 0o600)
    }

    /// Whole snapshots not yet confirmed by `target`, oldest first.
    public func pending(for target: String) -> [Entry] {
        entries().entries.filter { !isUploaded($0, to: target) }
    }

    /// Runs `body` holding the spool's lock, so that the lead and `pimesh snapshot create` never
    /// write the same sequence number.
    public func locked<T>(_ body: () throws -> T) throws -> T {
        // O_NOFOLLOW: a link planted in the spool would have the lead open, and create, its target.
        let fd = open(directory + "/.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIO.Failure(path: directory + "/.lock", operation: "open", errno: errno) }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw FileIO.Failure(path: directory + "/.lock", operation: "lock", errno: errno) }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}
