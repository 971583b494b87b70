import Crypto
import Glibc
import PimeshAgent
import PimeshCore
import PimeshSnapshot
import PimeshSystem

/// The releases of the lead in its data dir (docs/pi.md, "Update and rollback"):
///
///     releases/<sha256>/pimesh     one binary per release, named by its own digest
///     releases/<sha256>/broken     why it was rolled back (its presence refuses it again)
///     current  -> releases/<sha>   what `pimesh run` executes (absent: the packaged binary)
///     previous -> releases/<sha>   what a rollback returns to (absent: the packaged binary)
///     broken   -> releases/<sha>   the release rolled back last
///     update-pending.json          a release switched to but not yet committed
///
/// Links change by renaming a new symlink over the old one, so a power cut leaves either.
public struct ReleaseStore: Sendable {
    public enum Link: String, Sendable, CaseIterable {
        case current, previous, broken
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String

        public init(_ description: String) {
            self.description = description
        }
    }

    /// What `update-pending.json` holds between the switch and the commit.
    public struct Pending: Codable, Sendable, Equatable {
        public var release: String
        /// nil: the packaged binary ran before.
        public var previous: String?
        public var switchedAtMs: Int64
        /// The snapshot taken before the release's schema migration, which the next lead
        /// restores after a rollback (MigrationRollback: the old binary cannot read a migrated
        /// database).
        public var snapshot: String?
    }

    public static let binaryName = "pimesh"
    public static let pendingFile = "update-pending.json"

    public let dataDir: String

    public init(dataDir: String) {
        self.dataDir = dataDir
    }

    public var releasesDir: String { dataDir + "/releases" }

    public func directory(of release: String) -> String { releasesDir + "/" + release }

    public func binary(of release: String) -> String { directory(of: release) + "/" + Self.binaryName }

    public static func isDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// The release a link names, or nil when the link is absent or points outside `releases/`.
    public func release(at link: Link) -> String? {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = readlink(dataDir + "/" + link.rawValue, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard target.hasPrefix("releases/") else { return nil }
        let name = String(target.dropFirst("releases/".count))
        return Self.isDigest(name) ? name : nil
    }

    /// Points `link` at `release` (nil removes it) by renaming a fresh symlink over it.
    public func set(_ link: Link, to release: String?) throws {
        let path = dataDir + "/" + link.rawValue
        guard let release else {
            if unlink(path) != 0 && errno != ENOENT { throw FileIO.Failure(path: path, operation: "unlink", errno: errno) }
            FileIO.syncDirectory(of: path)
            return
        }
        let temporary = path + ".new.\(getpid())"
        unlink(temporary)
        guard symlink("releases/" + release, temporary) == 0 else { throw FileIO.Failure(path: temporary, operation: "symlink", errno: errno) }
        giveToOwner(temporary)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw FileIO.Failure(path: path, operation: "rename", errno: code)
        }
        FileIO.syncDirectory(of: path)
    }

    public func brokenReason(_ release: String) -> String? {
        (try? FileIO.readText(path: directory(of: release) + "/broken"))?.trimmingWhitespace()
    }

    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func markBroken(_ release: String, reason: String) throws {
        // A release whose directory went (removed by hand) is still rolled back and named.
        try makeReleasesDir()
        if mkdir(directory(of: release), 0o700) == 0 { giveToOwner(directory(of: release)) }
        let path = directory(of: release) + "/broken"
        try FileIO.writeAtomically(path: path, bytes: Array((reason + "\n").utf8), mode: 0o600)
        giveToOwner(path)
        try set(.broken, to: release)
    }

    public var pending: Pending? {
        guard let bytes = try? FileIO.read(path: dataDir + "/" + Self.pendingFile, limit: 4096) else { return nil }
        return try? APICoding.decode(Pending.self, from: bytes)
    }

    func setPending(_ pending: Pending?) throws {
        let path = dataDir + "/" + Self.pendingFile
        guard let pending else {
            unlink(path)
            FileIO.syncDirectory(of: path)
            return
        }
        try FileIO.writeAtomically(path: path, bytes: try APICoding.encode(pending), mode: 0o600)
        giveToOwner(path)
    }

    /// Why a release cannot be staged or run from this store: the data dir or `releases/` is
    /// writable by someone other than its owner, or belongs to another user. Whoever could
    /// write there could plant `releases/<sha>/` (a published release's digest is known) and
    /// have the smoke test, or the lead, run their binary. Nil when it can be.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func trustProblem() -> String? {
        if let why = TrustedFile.unsafeReason(dataDir, followingLinks: true) { return why }
        guard FileIO.linkExists(releasesDir) else { return nil }
        var info = stat()
        guard lstat(releasesDir, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return "\(releasesDir) is not a directory" }
        return TrustedFile.unsafeReason(info, path: releasesDir)
    }

    /// Copies the release from `source` (an open descriptor at offset 0), at most `limit`
    /// bytes, into `releases/<sha>/pimesh`, 0755, through a temporary name: a half-written
    /// binary is never under its final name. Returns the digest it was stored under, and
    /// whether its directory is new (a failed apply removes only what it made).
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func stage(from source: Int32, limit: Int, expectedDigest: String?) throws -> (digest: String, created: Bool) {
        try makeReleasesDir()
        let staging = releasesDir + "/.staging.\(getpid())"
        unlink(staging)
        let fd = open(staging, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o700)
        guard fd >= 0 else { throw FileIO.Failure(path: staging, operation: "create", errno: errno) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var total = 0
        do {
            while true {
                let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileIO.Failure(path: staging, operation: "read the release", errno: errno)
                }
                if n == 0 { break }
                // Checked as it is read: a file that grows after its size was checked must not
                // fill the SD card.
                total += n
                guard total <= limit else { throw Failure("the release grew past update.max_release_mb (\(limit >> 20)) while it was read") }
                hasher.update(data: buffer[0..<n])
                try buffer.withUnsafeBytes { try FileIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n]), path: staging) }
            }
            guard fsync(fd) == 0 else { throw FileIO.Failure(path: staging, operation: "fsync", errno: errno) }
        } catch {
            close(fd)
            unlink(staging)
            throw error
        }
        close(fd)
        let digest = Hex.encode(Array(hasher.finalize()))
        if let expectedDigest, expectedDigest != digest {
            unlink(staging)
            throw Failure("the release's SHA-256 is \(digest), not the \(expectedDigest) that --sha256 names")
        }
        let directory = directory(of: digest)
        let created = mkdir(directory, 0o755) == 0
        if !created {
            let code = errno
            var info = stat()
            let problem: String? =
                code != EEXIST ? "cannot make \(directory): \(String(cString: strerror(code)))"
                : lstat(directory, &info) != 0 || info.st_mode & S_IFMT != S_IFDIR ? "\(directory) is not a directory"
                : TrustedFile.unsafeReason(info, path: directory)
            if let problem {
                unlink(staging)
                throw Failure("refusing to stage release \(digest): \(problem)")
            }
        }
        giveToOwner(directory)
        chmod(staging, 0o755)
        giveToOwner(staging)
        guard rename(staging, binary(of: digest)) == 0 else {
            let code = errno
            unlink(staging)
            throw FileIO.Failure(path: binary(of: digest), operation: "rename", errno: code)
        }
        FileIO.syncDirectory(of: binary(of: digest))
        return (digest, created)
    }

    /// Deletes a release's directory and what is in it (a failed apply's, or one pruned);
    /// true when it is gone.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    @discardableResult
    public func discard(_ digest: String) -> Bool {
        let directory = directory(of: digest)
        var info = stat()
        guard lstat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return false }
        for name in (try? FileIO.list(directory)) ?? [] { unlink(directory + "/" + name) }
        return rmdir(directory) == 0
    }

    /// current becomes `release`; what was current becomes previous; the switch is pending
    /// until `commit()`.
    /// While an earlier switch is still pending, its `previous` (the last committed state)
    /// stays the rollback target: an uncommitted release is never what a rollback returns to.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func switchTo(_ release: String, nowMs: Int64, snapshot: String?) throws {
        let before: String? = if let pending { pending.previous } else { self.release(at: .current) }
        try setPending(Pending(release: release, previous: before == release ? nil : before, switchedAtMs: nowMs, snapshot: snapshot))
        try set(.previous, to: before == release ? nil : before)
        try set(.current, to: release)
    }

    /// The release stays: the snapshot taken before its migration is an ordinary one again.
    public func commit() throws {
        let snapshot = pending?.snapshot
        try setPending(nil)
        if let snapshot { (try? SnapshotSpool(directory: dataDir + "/spool"))?.unpin(snapshot) }
    }

    /// Serialises updaters, a manual rollback and pimesh-rollback.service: staging, the checks
    /// of the links and the changes that follow them, discarding and pruning happen under this
    /// lock (two applies once deleted each other's releases and left `current` dangling).
    public func locked<T>(_ body: () throws -> T) throws -> T {
        let fd = try lock()
        defer { close(fd) }
        return try body()
    }

    /// Takes the lock; closing the descriptor releases it.
    public func lock() throws -> Int32 {
        let path = dataDir + "/update.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw FileIO.Failure(path: path, operation: "open", errno: errno) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let code = errno
                close(fd)
                throw FileIO.Failure(path: path, operation: "flock", errno: code)
            }
        }
        return fd
    }

    public struct Rollback: Sendable, Equatable, Codable {
        /// The release that was current and is now marked broken; nil when none was.
        public var from: String?
        /// The release now current; nil: the packaged binary.
        public var to: String?
    }

    /// current goes back to previous (or to the packaged binary when there is none) and the
    /// release that was current is marked broken with `reason`.
    /// `expected`: only when that release is still current (nil: whatever is current); the
    /// updater and pimesh-rollback.service may both try, and only the first may act.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func rollback(reason: String, expected: String? = nil) throws -> Rollback? {
        let bad = release(at: .current)
        if let expected, bad != expected { return nil }
        let pending = pending
        let good = pending.map { $0.previous } ?? release(at: .previous)
        if let bad { try markBroken(bad, reason: reason) }
        if let snapshot = pending?.snapshot {
            try MigrationRollback.mark(dataDir: dataDir, snapshot: snapshot, release: bad, nowMs: Clock.wallMilliseconds())
            giveToOwner(dataDir + "/" + MigrationRollback.markFile)
        }
        try set(.current, to: good)
        try set(.previous, to: nil)
        try setPending(nil)
        return Rollback(from: bad, to: good)
    }

    /// Deletes releases that no link names and that are not pending, keeping the newest
    /// `keep` of them (by the binary's change time) for a manual switch back.
    @discardableResult
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func prune(keep: Int) -> [String] {
        let named = Set(Link.allCases.compactMap { release(at: $0) } + [pending?.release].compactMap { $0 })
        let candidates = ((try? FileIO.list(releasesDir)) ?? []).filter { Self.isDigest($0) && !named.contains($0) }
        let byAge = candidates.map { release -> (String, Int) in
            var info = stat()
            return (release, stat(binary(of: release), &info) == 0 ? info.st_ctim.tv_sec : 0)
        }.sorted { $0.1 > $1.1 }
        var removed: [String] = []
        for (release, _) in byAge.dropFirst(max(0, keep)) where discard(release) {
            removed.append(release)
        }
        return removed
    }

    /// The releases in the store, newest first.
    public func releases() -> [String] {
        ((try? FileIO.list(releasesDir)) ?? []).filter(Self.isDigest).sorted()
    }

    func makeReleasesDir() throws {
        if mkdir(releasesDir, 0o700) != 0 && errno != EEXIST { throw FileIO.Failure(path: releasesDir, operation: "mkdir", errno: errno) }
        giveToOwner(releasesDir)
    }

    /// Run as root (sudo pimesh update …), the updater hands what it makes to the owner of the
    /// data dir, the lead's user, so that the lead can prune and roll back by itself.
    private func giveToOwner(_ path: String) {
        guard geteuid() == 0 else { return }
        var info = stat()
        guard stat(dataDir, &info) == 0, info.st_uid != 0 else { return }
        lchown(path, info.st_uid, info.st_gid)
    }

    /// The release this process runs, from its own executable's path; nil for a binary outside
    /// `<data-dir>/releases/` (the packaged one).
    public static func runningRelease(dataDir: String) -> String? {
        guard let exe = resolvedPath("/proc/self/exe"), let releases = resolvedPath(dataDir + "/releases") else { return nil }
        let prefix = releases + "/"
        guard exe.hasPrefix(prefix), exe.hasSuffix("/" + binaryName) else { return nil }
        let name = String(exe.dropFirst(prefix.count).dropLast(binaryName.count + 1))
        return isDigest(name) ? name : nil
    }

    static func resolvedPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
