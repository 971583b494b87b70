import Glibc
import Logging
import NIOPosix
import PimeshAgent
import PimeshCore
import PimeshSnapshot
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// Takes a snapshot into the spool every `snapshots.interval_s` and on demand
/// (`POST /v1/snapshots`), one at a time (DESIGN.md §6). The copy and the compression block on
/// file I/O, so they run on a thread of their own, off the lead's executor; a failed snapshot is
/// logged and tried again at the next interval.
final class SnapshotService: Service, Sendable {
    let maker: SnapshotMaker
    let interval: Duration?
    let audit: AuditLog?
    let logger: Logger
    private let pool: NIOThreadPool
    /// Told after each verification: nil when every snapshot in the spool verified, else what failed.
    private let integrity = Mutex<Callback<@Sendable (String?) -> Void>?>(nil)
    /// Quarantined snapshots kept (`<spool>/quarantine`), oldest dropped first.
    static let quarantineKeep = 4

    func onIntegrity(_ body: @escaping @Sendable (String?) -> Void) {
        integrity.withLock { $0 = Callback(body) }
    }

    init(maker: SnapshotMaker, interval: Duration?, audit: AuditLog?, logger: Logger) {
        self.maker = maker
        self.audit = audit
        self.interval = interval
        self.logger = logger
        // One thread: snapshots queue behind each other instead of racing for the spool lock.
        pool = NIOThreadPool(numberOfThreads: 1)
    }

    func run() async throws {
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        let removed = maker.spool.recover()
        if !removed.isEmpty {
            logger.notice("snapshot spool: removed what an interrupted snapshot left", metadata: ["files": "\(removed.joined(separator: " "))"])
        }
        guard let interval else {
            try? await gracefulShutdown()
            return
        }
        await repeatUntilGracefulShutdown(every: interval) {
            _ = try? await self.takeNow()
        }
    }

    @discardableResult
    @_optimize(size)  // cold: a snapshot every few hours (the 25 MB budget)
    func takeNow() async throws -> SnapshotMaker.Made {
        do {
            // Every snapshot carries a head that covers the audit log up to now (docs/audit.md).
            _ = try await audit?.sealHead()
            let made = try await pool.runIfActive { [maker] in try maker.create() }
            let m = made.entry.manifest
            logger.info(
                "snapshot taken",
                metadata: [
                    "sequence": "\(m.sequence)", "raw_bytes": "\(m.rawBytes)", "compressed_bytes": "\(m.compressedBytes)",
                    "ms": "\(Int(made.copyMs + made.compressMs))",
                ])
            for dropped in made.dropped {
                logger.notice("snapshot dropped from the spool (bounds)", metadata: ["sequence": "\(dropped.manifest.sequence)"])
            }
            // Seed 002's DIRT02 safeguard: what was just written is read back and checked.
            _ = try? await verifySpool()
            return made
        } catch {
            logger.error("snapshot failed", metadata: ["error": "\(error)"])
            throw error
        }
    }

    struct QuarantineFailed: Error, CustomStringConvertible {
        var description: String
    }

    struct Verification: Sendable {
        var checked = 0
        var failures: [(manifest: String, problem: String)] = []
        var milliseconds: Double = 0
    }

    /// Verifies every snapshot in the spool (signature, sizes, SHA-256s, LZ4 checksums) on the
    /// snapshot thread, so that it never races a snapshot being written, and reports the result
    /// to the incident engine.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    func verifySpool() async throws -> Verification {
        let started = Clock.monotonicNow()
        var result = try await pool.runIfActive { [maker] in
            var result = Verification()
            let (entries, unreadable) = maker.spool.entries()
            for path in unreadable { result.failures.append((path, "the manifest does not parse")) }
            for entry in entries {
                result.checked += 1
                do {
                    _ = try SnapshotVerifier.verify(entry.manifestPath)
                } catch {
                    result.failures.append((entry.manifestPath, "\(error)"))
                }
            }
            return result
        }
        result.milliseconds = (Clock.monotonicNow() - started).milliseconds
        let failing = result.failures.isEmpty ? nil : result.failures.map { "\($0.manifest): \($0.problem)" }.joined(separator: "; ")
        if let failing { logger.error("snapshot verification failed", metadata: ["problems": "\(failing)"]) }
        integrity.withLock { $0 }?.call(failing.map { String(decoding: $0.utf8.prefix(400), as: UTF8.self) })
        return result
    }

    /// Moves snapshots that failed verification (manifest and file) to `<spool>/quarantine`
    /// (0700), keeping the newest `quarantineKeep`; returns the manifests moved.
    @_optimize(size)  // cold: after a failed verification (the 25 MB budget)
    func quarantine(_ manifests: [String]) async throws -> [String] {
        try await pool.runIfActive { [maker] in
            let directory = maker.spool.directory + "/quarantine"
            try FileIO.makeDirectories(directory, mode: 0o700)
            var moved: [String] = []
            for manifest in manifests where manifest.hasPrefix(maker.spool.directory + "/") && manifest.hasSuffix(".json") {
                let base = String(manifest.dropLast(5))
                let name = base.split(separator: "/").last.map(String.init) ?? base
                for (from, to) in [(base + ".db.lz4", "\(directory)/\(name).db.lz4"), (manifest, "\(directory)/\(name).json")] where FileIO.exists(from) {
                    guard rename(from, to) == 0 else { throw QuarantineFailed(description: "cannot move \(from) to \(directory): \(String(cString: strerror(errno)))") }
                }
                moved.append(manifest)
            }
            let kept = ((try? FileIO.list(directory)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
            for old in kept.dropLast(Self.quarantineKeep) {
                FileIO.remove("\(directory)/\(old)")
                FileIO.remove("\(directory)/\(old.dropLast(5)).db.lz4")
            }
            return moved
        }
    }
}
