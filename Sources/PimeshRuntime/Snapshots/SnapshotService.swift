import Logging
import NIOPosix
import PimeshCore
import PimeshSnapshot
import ServiceLifecycle

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
            return made
        } catch {
            logger.error("snapshot failed", metadata: ["error": "\(error)"])
            throw error
        }
    }
}
