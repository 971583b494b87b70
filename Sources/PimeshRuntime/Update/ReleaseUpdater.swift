import Crypto
import Glibc
import PimeshAgent
import PimeshCore
import PimeshRelease
import PimeshSnapshot
import PimeshStore
import PimeshSystem

/// `pimesh update apply|rollback` (docs/pi.md): verify, stage, smoke-test, switch, restart
/// through systemd, soak, then commit or roll back. Runs outside the lead: it must outlive the
/// restart it asks for.
public struct ReleaseUpdater {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public var exitCode: Int32 = 1
    }

    /// What `pimesh update info --json` prints: the smoke test reads it from the new binary.
    public struct BinaryInfo: Codable, Sendable, Equatable {
        public var version: String
        public var storeSchema: Int
        /// The ELF machine (62 x86-64, 183 aarch64) of the binary that answered.
        public var machine: Int

        public static var this: BinaryInfo {
            BinaryInfo(
                version: PimeshVersion.current, storeSchema: Schema.newest,
                machine: ReleaseUpdater.elfMachine(path: "/proc/self/exe") ?? 0)
        }
    }

    public struct Report: Codable, Sendable, Equatable {
        /// committed, rolled_back, already_current, staged (with --no-restart).
        public var outcome: String
        public var release: String
        public var version: String?
        /// The release current before (nil: the packaged binary).
        public var previous: String?
        public var snapshot: String?
        public var leadPID: Int32?
        public var readyAfterMs: Int?
        public var soakedS: Int?
        public var detail: String
    }

    /// Run as root (systemctl needs it), the updater works in the data dir as the dir's owner,
    /// the lead's user: a lead that planted symlinks there cannot make root write, delete or
    /// chmod anything outside it. Root comes back only to start the smoke test as that user
    /// and to run systemd-run.
    struct Privileges {
        let owner: ProcessIdentity?

        init(dataDir: String) {
            var info = stat()
            if geteuid() == 0, stat(dataDir, &info) == 0, info.st_uid != 0 {
                owner = ProcessIdentity(user: String(info.st_uid), uid: info.st_uid, gid: info.st_gid, groups: [info.st_gid])
            } else {
                owner = nil
            }
        }

        func lower() {
            guard let owner else { return }
            var groups = [owner.gid]
            setgroups(1, &groups)
            setegid(owner.gid)
            seteuid(owner.uid)
        }

        func raised<T>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
            guard owner != nil else { return try body() }
            seteuid(0)
            setegid(0)
            defer { lower() }
            return try body()
        }
    }

    public let store: ReleaseStore
    let privileges: Privileges
    public let settings: LeadConfig.Update
    public let environment: [String: String]
    public var progress: @Sendable (String) -> Void = { _ in }

    public init(dataDir: String, settings: LeadConfig.Update, environment: [String: String]) {
        self.store = ReleaseStore(dataDir: dataDir)
        self.privileges = Privileges(dataDir: dataDir)
        self.settings = settings
        self.environment = environment
    }

    /// The signature of a release is Ed25519 over this text, so that a signature made for
    /// something else (a snapshot, an audit head) never passes as one for a release.
    public static func signedMessage(digest: String) -> [UInt8] {
        Array("pimesh-release-v1 \(digest)".utf8)
    }

    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func verifySignature(digest: String, signatureText: String, signatureFile: String) throws(Failure) {
        guard !settings.trustedKeys.isEmpty else {
            throw Failure(description: "no update.trusted_keys in the config: no release can be verified (docs/pi.md, \"Update and rollback\")")
        }
        let text = signatureText.trimmingWhitespace().lowercased()
        guard let signature = Hex.decode(text), signature.count == 64 else {
            throw Failure(description: "the signature \(signatureFile) is not 128 hex digits (an Ed25519 signature from `pimesh update sign`)")
        }
        let message = Self.signedMessage(digest: digest)
        guard settings.trustedKeys.contains(where: { NodeKey.verify(signature: signature, message: message, publicKeyHex: $0) }) else {
            throw Failure(description: "the signature \(signatureFile) of release \(digest) is not made by any key in update.trusted_keys")
        }
    }

    /// Runs `body` holding the store's update lock.
    func underLock<T>(_ body: () throws(Failure) -> T) throws(Failure) -> T {
        let fd: Int32
        do {
            fd = try store.lock()
        } catch {
            throw Failure(description: "cannot take the update lock: \(error)")
        }
        defer { close(fd) }
        return try body()
    }

    // MARK: apply

    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    public func apply(
        source: String, signature: String?, expectedDigest: String?, force: Bool, restart: Bool
    ) throws(Failure) -> Report {
        privileges.lower()
        var directory = stat()
        guard stat(store.dataDir, &directory) == 0, (directory.st_mode & S_IFMT) == S_IFDIR else {
            throw Failure(description: "no data dir \(store.dataDir): is --data-dir (or data_dir in the config) right?")
        }
        if let why = store.trustProblem() {
            throw Failure(description: "refusing to update: \(why); whoever may write there could plant a release: `chmod go-w` it, or give it to the data dir's owner")
        }
        let signatureSource = signature ?? source + ".sig"
        // Downloads come first, outside update.lock: a rollback by pimesh-rollback.service must
        // not wait on the network.
        let signatureText = try readSignature(signatureSource)
        let (fd, downloaded) = try open(source: source, what: "the release")
        let staged: (digest: String, info: BinaryInfo)?
        do {
            defer {
                close(fd)
                if let downloaded { unlink(downloaded) }
            }
            // Staging, the checks and the smoke test (10 s at most) hold the lock: another apply
            // must neither discard nor prune this release meanwhile.
            staged = try underLock { () throws(Failure) -> (digest: String, info: BinaryInfo)? in
                let digest: String
                let created: Bool
                do {
                    (digest, created) = try store.stage(from: fd, limit: settings.maxReleaseMB << 20, expectedDigest: expectedDigest?.lowercased())
                } catch let failure as Failure {
                    throw failure
                } catch {
                    throw Failure(description: "cannot stage the release \(source): \(error)")
                }
                do throws(Failure) {
                    try verifySignature(digest: digest, signatureText: signatureText, signatureFile: signatureSource)
                    progress("release \(digest.prefix(12)): signature verified")
                    if let reason = store.brokenReason(digest), !force {
                        throw Failure(description: "release \(digest) was rolled back before (\(reason)); --force applies it again")
                    }
                    if store.release(at: .current) == digest && store.pending == nil { return nil }
                    let info = try smokeTest(digest)
                    progress("release \(digest.prefix(12)): pimesh \(info.version), store schema \(info.storeSchema), smoke test passed")
                    return (digest, info)
                } catch {
                    // Only what this apply made goes: a kept release, and its `broken` mark, stay.
                    if created { store.discard(digest) }
                    throw error
                }
            }
        }
        guard let (digest, info) = staged else {
            let digest = store.release(at: .current) ?? "?"
            return Report(outcome: "already_current", release: digest, previous: store.release(at: .previous), detail: "release \(digest) is already current")
        }
        // The running lead takes it, which may take minutes on a large store: not under the lock.
        let snapshot = try snapshotBeforeMigration(to: info.storeSchema)
        let running = try? LeadDiscovery.endpoint(dataDir: store.dataDir)
        let before = try underLock { () throws(Failure) -> String? in
            guard FileIO.exists(store.binary(of: digest)) else {
                throw Failure(description: "release \(digest) was removed by another update while this one took its snapshot; apply it again")
            }
            // While an earlier switch is pending, its previous stays the rollback target.
            let before = store.pending.map { $0.previous } ?? store.release(at: .current)
            do {
                try store.switchTo(digest, nowMs: Clock.wallMilliseconds(), snapshot: snapshot)
            } catch {
                throw Failure(description: "cannot switch to release \(digest): \(error)")
            }
            return before
        }
        progress("current → \(digest.prefix(12)), previous → \(before.map { String($0.prefix(12)) } ?? "the packaged binary")")
        var report = Report(
            outcome: "staged", release: digest, version: info.version, previous: before, snapshot: snapshot, detail: "")
        guard restart else {
            report.detail = "switched; not committed until the lead runs it: restart it and run `pimesh update commit`"
            return report
        }
        try restartLead()
        switch waitUntilHealthy(release: digest, replacing: running) {
        case .healthy(let pid, let readyMs, let soaked):
            do {
                try store.locked {
                    try store.commit()
                    store.prune(keep: settings.keepReleases)
                }
            } catch {
                throw Failure(description: "the new lead is healthy but the commit failed: \(error)")
            }
            report.outcome = "committed"
            report.leadPID = pid
            report.readyAfterMs = readyMs
            report.soakedS = soaked
            report.detail = "release \(digest) committed: READY after \(readyMs) ms, healthy for \(soaked) s"
            return report
        case .failed(let why) where store.release(at: .current) != digest:
            // pimesh-rollback.service (OnFailure=) was quicker: the crash loop is already undone;
            // or another update switched meanwhile, and nothing marked this one broken.
            let now = store.release(at: .current)
            report.outcome = "rolled_back"
            report.detail = store.brokenReason(digest).map { "release \(digest) rolled back by pimesh-rollback.service (\($0))" }
                ?? "release \(digest) is no longer current: another update switched to \(now.map { "release \($0)" } ?? "the packaged binary") before its soak ended"
            if case .ready(let pid, _) = waitUntilReady(release: now, replacing: nil) {
                report.leadPID = pid
                report.detail += "; \(now.map { "release \($0)" } ?? "the packaged binary") is READY"
            }
            throw Failure(description: report.detail, exitCode: 1)
        case .failed(let why):
            progress("release \(digest.prefix(12)): \(why); rolling back")
            let back = try rollBack(reason: why, restart: true, expected: digest)
            report.outcome = "rolled_back"
            report.detail = back.rolledBack
                ? "release \(digest) rolled back: \(why); \(back.detail)"
                : "release \(digest) rolled back by pimesh-rollback.service (\(store.brokenReason(digest) ?? why))"
            report.leadPID = back.leadPID
            throw Failure(description: report.detail, exitCode: 1)
        }
    }

    /// `pimesh update commit`: after a switch made with --no-restart and a restart by hand.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func commit() throws(Failure) -> Report {
        privileges.lower()
        guard let pending = store.pending else { throw Failure(description: "no update is pending") }
        guard let lead = try? LeadDiscovery.endpoint(dataDir: store.dataDir), lead.release == pending.release else {
            throw Failure(description: "the running lead is not release \(pending.release): restart it first")
        }
        do {
            try store.locked {
                try store.commit()
                store.prune(keep: settings.keepReleases)
            }
        } catch {
            throw Failure(description: "cannot commit: \(error)")
        }
        return Report(outcome: "committed", release: pending.release, previous: pending.previous, leadPID: lead.pid, detail: "release \(pending.release) committed")
    }

    // MARK: rollback

    public struct RollbackReport: Codable, Sendable, Equatable {
        public var rolledBack: Bool
        public var from: String?
        public var to: String?
        public var leadPID: Int32?
        public var detail: String
    }

    /// `onlyPending`: the unit's OnFailure= path rolls back only a release that was never
    /// committed; a committed one that fails later fails for another reason (config, disk).
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public func rollBack(reason: String, restart: Bool, onlyPending: Bool = false, expected: String? = nil) throws(Failure) -> RollbackReport {
        privileges.lower()
        let running = try? LeadDiscovery.endpoint(dataDir: store.dataDir)
        let outcome: Result<ReleaseStore.Rollback?, any Error> = Result {
            try store.locked { () throws -> ReleaseStore.Rollback? in
                let pending = store.pending
                if onlyPending && pending?.release != store.release(at: .current) { return nil }
                guard store.release(at: .current) != nil || pending != nil else { return nil }
                let snapshotNote = pending?.snapshot.map { "; if the database was migrated, the next lead restores \($0), taken before the switch" } ?? ""
                return try store.rollback(reason: reason + snapshotNote, expected: expected ?? (onlyPending ? pending?.release : nil))
            }
        }
        let back: ReleaseStore.Rollback
        switch outcome {
        case .failure(let error): throw Failure(description: "cannot roll back: \(error)")
        case .success(nil):
            let why = onlyPending ? "no update is pending" : expected != nil ? "release \(expected!) is no longer current" : "the packaged binary is current"
            return RollbackReport(rolledBack: false, detail: "\(why); nothing rolled back")
        case .success(let done?): back = done
        }
        let target = back.to.map { "release \($0)" } ?? "the packaged binary"
        var report = RollbackReport(rolledBack: true, from: back.from, to: back.to, detail: "current → \(target)")
        progress(report.detail)
        guard restart else { return report }
        try restartLead()
        switch waitUntilReady(release: back.to, replacing: running) {
        case .ready(let pid, let ms):
            report.leadPID = pid
            report.detail += ", READY again after \(ms) ms"
        case .notReady(let why):
            throw Failure(description: "rolled back to \(target), but \(why)")
        }
        return report
    }

    // MARK: steps

    private func open(source: String, what: String, limit: Int? = nil) throws(Failure) -> (Int32, String?) {
        let limitName = limit.map { "\($0) bytes, the most \(what) may be" } ?? "update.max_release_mb (\(settings.maxReleaseMB) MiB)"
        let limit = limit ?? settings.maxReleaseMB << 20
        if source.hasPrefix("http://") || source.hasPrefix("https://") {
            let path = store.dataDir + "/.download.\(getpid())"
            let fd = Glibc.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
            progress("downloading \(source)")
            do {
                _ = try CurlGet(url: source, maxBytes: limit, limitName: limitName).download(to: fd)
            } catch {
                close(fd)
                unlink(path)
                throw Failure(description: "cannot download \(what): \(error)")
            }
            lseek(fd, 0, SEEK_SET)
            return (fd, path)
        }
        let fd: Int32
        let info: stat
        do {
            (fd, info) = try FileIO.openRegular(path: source)
        } catch {
            throw Failure(description: "cannot read \(what) \(source): \(error)")
        }
        guard info.st_size <= limit else {
            close(fd)
            throw Failure(description: "\(what) \(source) is \(info.st_size) bytes, more than \(limitName)")
        }
        return (fd, nil)
    }

    private func readSignature(_ source: String) throws(Failure) -> String {
        if source.hasPrefix("http://") || source.hasPrefix("https://") {
            let (fd, path) = try open(source: source, what: "the signature", limit: 4096)
            defer {
                close(fd)
                if let path { unlink(path) }
            }
            guard let text = try? FileIO.readText(path: path ?? source) else { throw Failure(description: "cannot read the signature \(source)") }
            return text
        }
        do {
            return try String(decoding: FileIO.read(path: source, limit: 4096), as: UTF8.self)
        } catch {
            throw Failure(description: "no signature: \(error) (make one with `pimesh update sign`, or name it with --signature)")
        }
    }

    /// The new binary must be for this machine's architecture and answer `update info --json`
    /// (its argument parser and runtime start) within 10 s, run as the lead's user.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    func smokeTest(_ digest: String) throws(Failure) -> BinaryInfo {
        let binary = store.binary(of: digest)
        let own = Self.elfMachine(path: "/proc/self/exe")
        guard let machine = Self.elfMachine(path: binary) else { throw Failure(description: "release \(digest) is not an ELF executable") }
        guard machine == own else {
            throw Failure(description: "release \(digest) is built for ELF machine \(machine) (\(Self.machineName(machine))), this node runs \(own.map(Self.machineName) ?? "?")")
        }
        let outcome = try privileges.raised { () throws(Failure) -> Outcome in
            Self.runCapturing(
                binary, ["update", "info", "--json"], environment: ["PATH=" + (environment["PATH"] ?? "/usr/bin:/bin")],
                identity: privileges.owner, timeoutMs: 10_000, endingItsGroup: true)
        }
        guard !outcome.timedOut, outcome.status == 0, let info = try? APICoding.decode(BinaryInfo.self, from: Array(outcome.output.utf8)) else {
            throw Failure(description: "release \(digest) failed its smoke test (`pimesh update info --json` \(outcome.describe)): \(outcome.output.prefix(300))")
        }
        guard info.machine == machine else { throw Failure(description: "release \(digest) reports ELF machine \(info.machine) but is \(machine)") }
        return info
    }

    /// A schema migration cannot be undone by switching binaries back: the database is
    /// snapshotted first, and the snapshot pinned in the spool until the commit, so that the
    /// next lead after a rollback can restore it (MigrationRollback).
    @_optimize(size)  // cold: an update (the 25 MB budget)
    private func snapshotBeforeMigration(to schema: Int) throws(Failure) -> String? {
        let path = store.dataDir + "/pimesh.db"
        guard FileIO.exists(path) else { return nil }
        // Unreadable here (a schema newer than this updater knows): snapshot, to be safe.
        let current = try? Database(path: path, readOnly: true).schemaVersion
        if let current, schema <= current { return nil }
        progress("store schema \(current.map(String.init) ?? "?") → \(schema): taking a snapshot first")
        do {
            let spool = try SnapshotSpool(directory: store.dataDir + "/spool", maxCount: 64, maxBytes: 1 << 40)
            let file: String
            if let client = try? LeadClient(dataDir: store.dataDir, timeoutMs: 600_000),
                let raw = try? client.post("/v1/snapshots", json: Array("{}".utf8)),
                let manifest = try? APICoding.decode(SnapshotManifest.self, from: raw)
            {
                file = manifest.file
            } else {
                let maker = SnapshotMaker(
                    databasePath: path, stagingDirectory: store.dataDir, spool: spool, key: try NodeKey.loadOrCreate(dataDir: store.dataDir))
                file = try maker.create().entry.manifest.file
            }
            try spool.pin(file)
            return file
        } catch {
            throw Failure(description: "the store schema changes (\(current.map(String.init) ?? "?") → \(schema)) and no snapshot could be taken first: \(error)")
        }
    }

    /// `systemd-run` puts the restart in a transient unit of its own: a `systemctl restart` run
    /// from inside the lead's cgroup (an updater the lead started) would die with the lead.
    private func restartLead() throws(Failure) {
        progress("restarting \(settings.unit) through systemd")
        let outcome = try privileges.raised { () throws(Failure) -> Outcome in
            Self.runCapturing(
            "systemd-run", ["--quiet", "--collect", "systemctl", "restart", settings.unit],
            // The caller's own environment: systemctl honours SYSTEMD_* variables an operator may set.
            environment: environment.map { "\($0.key)=\($0.value)" }, identity: nil, timeoutMs: 60_000)
        }
        guard outcome.status == 0 else {
            throw Failure(description: "systemd-run systemctl restart \(settings.unit) \(outcome.describe): \(outcome.output.prefix(300))")
        }
    }

    enum Readiness {
        case ready(pid: Int32, ms: Int)
        case notReady(String)
    }

    enum Health {
        case healthy(pid: Int32, readyMs: Int, soakedS: Int)
        case failed(String)
    }

    /// A new lead (not `replacing`) running `release` has written lead.json and answers /readyz.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    func waitUntilReady(release: String?, replacing old: LeadEndpoint?) -> Readiness {
        let start = Clock.monotonicNow()
        let deadline = start + .seconds(settings.readyTimeoutS)
        var last = "no lead has started"
        while Clock.monotonicNow() < deadline {
            if let release, store.release(at: .current) != release {
                return .notReady("release \(release) is no longer current")
            }
            guard let lead = try? LeadDiscovery.endpoint(dataDir: store.dataDir) else {
                last = "no lead is running"
                usleep(200_000)
                continue
            }
            if let old, lead.pid == old.pid, lead.startedAtMs == old.startedAtMs {
                last = "the old lead (pid \(old.pid)) is still running"
            } else if lead.release != release {
                last = "the lead that started runs \(lead.release ?? "the packaged binary"), not \(release ?? "the packaged binary")"
            } else if let answer = Self.probe(lead, path: "/readyz") {
                if answer.status == 200 || Self.storeFails(status: answer.status, readyz: answer.body) {
                    return .ready(pid: lead.pid, ms: Int((Clock.monotonicNow() - start).milliseconds.rounded()))
                }
                last = "the lead (pid \(lead.pid)) answers /readyz with \(answer.status): \(answer.text.trimmingWhitespace())"
            } else {
                last = "the lead (pid \(lead.pid)) does not answer /readyz"
            }
            usleep(200_000)
        }
        return .notReady("\(last) after \(settings.readyTimeoutS) s (update.ready_timeout_s)")
    }

    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    func waitUntilHealthy(release: String, replacing old: LeadEndpoint?) -> Health {
        let (pid, readyMs): (Int32, Int)
        switch waitUntilReady(release: release, replacing: old) {
        case .ready(let p, let ms): (pid, readyMs) = (p, ms)
        case .notReady(let why): return .failed(why)
        }
        progress("the new lead (pid \(pid)) is READY after \(readyMs) ms; soaking for \(settings.soakS) s")
        let start = Clock.monotonicNow()
        var missedProbes = 0
        while Clock.monotonicNow() - start < .seconds(settings.soakS) {
            usleep(500_000)
            guard let lead = try? LeadDiscovery.endpoint(dataDir: store.dataDir), lead.pid == pid else {
                return .failed("the new lead (pid \(pid)) stopped during the soak")
            }
            // Three probes in a row: one slow answer on a loaded Pi is not a failed release.
            missedProbes = Self.answers(lead, path: "/healthz") ? 0 : missedProbes + 1
            if missedProbes >= 3 { return .failed("the new lead (pid \(pid)) stopped answering /healthz during the soak") }
        }
        return .healthy(pid: pid, readyMs: readyMs, soakedS: settings.soakS)
    }

    static func answers(_ lead: LeadEndpoint, path: String) -> Bool {
        probe(lead, path: path)?.status == 200
    }

    /// A lead that runs and serves but cannot commit (a full card) answers /readyz 503
    /// `store_failing`. The release is not at fault: rolling back would mark a good release
    /// broken and start the old one on the same full card.
    static func storeFails(status: Int, readyz body: [UInt8]) -> Bool {
        struct Readiness: Decodable { var status: String }
        return status == 503 && (try? APICoding.decode(Readiness.self, from: body))?.status == "store_failing"
    }

    static func probe(_ lead: LeadEndpoint, path: String) -> LoopbackHTTPClient.Response? {
        let client = LoopbackHTTPClient(address: .loopback(host: lead.api.host, port: lead.api.port), timeoutMs: 2000)
        return try? client.request("GET", path)
    }

    // MARK: helpers

    /// e_machine of an ELF file; nil when it is not one.
    static func elfMachine(path: String) -> Int? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: 20)
        guard header.withUnsafeMutableBytes({ read(fd, $0.baseAddress, 20) }) == 20, header[0..<4] == [0x7f, 0x45, 0x4c, 0x46] else { return nil }
        // EI_DATA 1: little-endian (both arches a Pi fleet uses).
        return header[5] == 1 ? Int(header[18]) | Int(header[19]) << 8 : Int(header[19]) | Int(header[18]) << 8
    }

    static func machineName(_ machine: Int) -> String {
        switch machine {
        case 62: "x86-64"
        case 183: "aarch64"
        case 40: "arm"
        default: "machine \(machine)"
        }
    }

    struct Outcome {
        var status: Int32
        var output: String
        var timedOut = false

        var describe: String {
            timedOut ? "did not finish in time" : ChildProcess.describe(waitStatus: status).text
        }
    }

    /// Runs a program to its end, its stdout+stderr captured (first 64 KiB), killed at the deadline.
    /// `endingItsGroup`: whatever it started in its process group is killed with it (a smoke
    /// test's leftovers); not for systemd-run, whose restart must outlive it.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    static func runCapturing(
        _ program: String, _ arguments: [String], environment: [String], identity: ProcessIdentity?, timeoutMs: Int, endingItsGroup: Bool = false
    ) -> Outcome {
        let spawned: ChildProcess.Spawned
        do {
            spawned = try ChildProcess.spawn(program: program, arguments: arguments, environment: environment, captureOutput: true, identity: identity)
        } catch {
            return Outcome(status: 127 << 8, output: "\(error)")
        }
        var output: [UInt8] = []
        let deadline = Clock.monotonicNow() + .milliseconds(timeoutMs)
        var timedOut = false
        if let fd = spawned.output {
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let left = Int((deadline - Clock.monotonicNow()).milliseconds)
                if left <= 0 {
                    timedOut = true
                    break
                }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, Int32(min(left, 1000)))
                if ready < 0 && errno != EINTR { break }
                if ready <= 0 { continue }
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                if output.count < 65_536 { output += buffer[0..<n] }
            }
            close(fd)
        }
        // A child that closed its output early (or handed it to its own child) still has the
        // rest of the deadline, no more: a smoke test once waited for ever on one that paused.
        var ours = true
        while !timedOut {
            // Not reaped yet (WNOWAIT): its pid, and so its process group, cannot be reused
            // before the group is killed below.
            var info = siginfo_t()
            let waited = waitid(P_PID, id_t(spawned.pid), &info, WEXITED | WNOHANG | WNOWAIT)
            if waited < 0 && errno != EINTR {
                // Reaped elsewhere: its pid may belong to someone else by now.
                ours = false
                break
            }
            if waited == 0 && info._sifields._sigchld.si_pid == spawned.pid { break }
            if Clock.monotonicNow() >= deadline { timedOut = true } else { usleep(20_000) }
        }
        var status: Int32 = 0
        if ours {
            // It runs in a process group of its own.
            if endingItsGroup { kill(-spawned.pid, SIGKILL) }
            kill(spawned.pid, SIGKILL)
            while waitpid(spawned.pid, &status, 0) < 0 && errno == EINTR {}
        }
        return Outcome(status: status, output: String(decoding: output, as: UTF8.self), timedOut: timedOut)
    }
}
