import Crypto
import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// Seed 003's rollback, the node's part: per agent, the manifest in force and the one before
/// it (with the SHA-256 of the program each started), kept in `<data_dir>/manifest-history`
/// (0700, files 0600) so that a lead restart does not forget what was good. A rollback pins
/// the previous text: it is used instead of the file for as long as the file still holds the
/// text that was rolled back; editing the file (or a rollback of the rollback) ends the pin.
final class ManifestHistory: Sendable {
    struct Version: Codable, Sendable, Equatable {
        var text: String
        var binarySHA256: String?
        var sinceMs: Int64
    }

    struct Entry: Codable, Sendable, Equatable {
        var current: Version
        var previous: Version?
        /// The file text a rollback replaced: while the file still holds it, the pin holds.
        var pinnedOverSHA256: String?
        var pinned: Version?
    }

    /// A change the root-cause analysis weighs (`RootCause.Evidence.changes`).
    struct Change: Sendable {
        var agent: String
        var at: Instant
        var what: String
    }

    static let maxTextBytes = 1 << 20
    static let maxChanges = 256

    let directory: String
    private let entries = Mutex<[String: Entry]>([:])
    private let changes = Mutex<[Change]>([])
    private let binaryCache = Mutex<[String: (stamp: String, sha: String)]>([:])
    let searchPath: String

    init(directory: String, searchPath: String) {
        self.directory = directory
        self.searchPath = searchPath
    }

    /// Reads what earlier leads kept; an unreadable file is skipped (its agent starts a new history).
    func load() {
        guard let names = try? FileIO.list(directory) else { return }
        var loaded: [String: Entry] = [:]
        for name in names where name.hasSuffix(".json") {
            guard let bytes = try? FileIO.read(path: directory + "/" + name, limit: 4 * Self.maxTextBytes),
                let entry = try? APICoding.decode(Entry.self, from: bytes)
            else { continue }
            loaded[String(name.dropLast(5))] = entry
        }
        entries.withLock { $0 = loaded }
    }

    /// Whether a manifest named `name` was ever in force on this node.
    func knows(_ name: String) -> Bool {
        entries.withLock { $0[name] != nil }
    }

    static func sha256(_ text: String) -> String {
        Hex.encode(Array(SHA256.hash(data: Array(text.utf8))))
    }

    /// The manifest to run for `manifest` as read from its file: the pinned rollback while the
    /// file still holds the text that was rolled back, else the file's.
    @_optimize(size)  // cold: at start and on a reload (the 25 MB budget)
    func inForce(_ manifest: AgentManifest) -> AgentManifest {
        guard let entry = entries.withLock({ $0[manifest.name] }), let over = entry.pinnedOverSHA256, let pinned = entry.pinned else {
            return manifest
        }
        guard Self.sha256(manifest.sourceText) == over else {
            // The file was edited since the rollback: the operator's word wins.
            entries.withLock { $0[manifest.name]?.pinned = nil; $0[manifest.name]?.pinnedOverSHA256 = nil }
            save(manifest.name)
            return manifest
        }
        guard var rolledBack = try? AgentManifest.parse(text: pinned.text, file: manifest.file), rolledBack.name == manifest.name else {
            return manifest
        }
        rolledBack.sourceText = pinned.text
        return rolledBack
    }

    /// Notes the manifest an agent runs with now; a different text or program makes the old one
    /// the previous version and a change dated now.
    func observe(_ manifest: AgentManifest, at now: Instant) {
        let binary = binarySHA256(of: manifest)
        let wallMs = Clock.wallMilliseconds()
        let version = Version(text: String(decoding: manifest.sourceText.utf8.prefix(Self.maxTextBytes), as: UTF8.self), binarySHA256: binary, sinceMs: wallMs)
        let (stored, change): (Bool, String?) = entries.withLock { entries in
            guard var entry = entries[manifest.name] else {
                entries[manifest.name] = Entry(current: version)
                return (true, nil)
            }
            let textChanged = entry.current.text != version.text
            let binaryChanged = entry.current.binarySHA256 != nil && binary != nil && entry.current.binarySHA256 != binary
            guard textChanged || binaryChanged else { return (false, nil) }
            entry.previous = entry.current
            entry.current = version
            entries[manifest.name] = entry
            return (true, [textChanged ? "manifest \(manifest.file) changed" : nil, binaryChanged ? "program \(manifest.command ?? "") changed" : nil]
                .compactMap { $0 }.joined(separator: ", "))
        }
        if stored { save(manifest.name) }
        if let change { recordChange(manifest.name, change, at: now) }
    }

    private func recordChange(_ agent: String, _ what: String, at now: Instant) {
        changes.withLock { changes in
            changes.append(Change(agent: agent, at: now, what: what))
            if changes.count > Self.maxChanges { changes.removeFirst(changes.count - Self.maxChanges) }
        }
    }

    func recentChanges() -> [Change] {
        changes.withLock { $0 }
    }

    func previous(of name: String) -> Version? {
        entries.withLock { $0[name]?.previous }
    }

    /// Makes the previous version the one in force, pinned over the file's current text;
    /// returns the manifest to run. The version rolled back from becomes the previous one, so a
    /// second rollback undoes the first.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    func rollBack(_ manifest: AgentManifest, at now: Instant) throws(Supervisor.ActionError) -> AgentManifest {
        guard let previous = previous(of: manifest.name) else {
            throw .unsupported("\"\(manifest.name)\" has no earlier manifest to roll back to: its manifest has not changed while this data dir was in use")
        }
        let fileText = (try? FileIO.readText(path: manifest.file)) ?? manifest.sourceText
        guard var restored = try? AgentManifest.parse(text: previous.text, file: manifest.file), restored.name == manifest.name else {
            throw .unsupported("the earlier manifest of \"\(manifest.name)\" no longer parses (a program it names may be gone)")
        }
        restored.sourceText = previous.text
        entries.withLock { entries in
            guard var entry = entries[manifest.name] else { return }
            let rolledBackFrom = entry.current
            entry.current = previous
            entry.previous = rolledBackFrom
            let backToFile = Self.sha256(previous.text) == Self.sha256(fileText)
            entry.pinned = backToFile ? nil : previous
            entry.pinnedOverSHA256 = backToFile ? nil : Self.sha256(fileText)
            entries[manifest.name] = entry
        }
        save(manifest.name)
        recordChange(manifest.name, "rolled back to the manifest of \(UTCTime.iso8601(epochMs: previous.sinceMs))", at: now)
        return restored
    }

    func isPinned(_ name: String) -> Bool {
        entries.withLock { $0[name]?.pinned != nil }
    }

    private func save(_ name: String) {
        guard let entry = entries.withLock({ $0[name] }), let bytes = try? APICoding.encode(entry) else { return }
        do {
            try FileIO.makeDirectories(directory, mode: 0o700)
            try FileIO.writeAtomically(path: directory + "/\(name).json", bytes: bytes, mode: 0o600)
        } catch {
            // The history is a help to rollback, not a reason to stop an agent.
        }
    }

    /// SHA-256 of the program a manifest starts, cached by inode, size and mtime (one hash of
    /// a shared binary for a hundred agents).
    @_optimize(size)  // cold: at start and on a reload (the 25 MB budget)
    func binarySHA256(of manifest: AgentManifest) -> String? {
        guard manifest.mode == .supervised, let command = manifest.command, let path = resolve(command) else { return nil }
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let stamp = "\(info.st_ino):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        if let cached = binaryCache.withLock({ $0[path] }), cached.stamp == stamp { return cached.sha }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            hasher.update(data: buffer[0..<count])
        }
        let sha = Hex.encode(Array(hasher.finalize()))
        binaryCache.withLock { cache in
            if cache.count > 256 { cache.removeAll() }
            cache[path] = (stamp, sha)
        }
        return sha
    }

    private func resolve(_ command: String) -> String? {
        if command.hasPrefix("/") { return command }
        for directory in searchPath.split(separator: ":") where !directory.isEmpty {
            let path = "\(directory)/\(command)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}
