import Logging
import NIOPosix
import PimeshCore
import PimeshSnapshot
import ServiceLifecycle
import Synchronization

/// Ships spooled snapshots to the configured target, oldest first, one at a time. A snapshot
/// counts as shipped only when the receiver confirmed its checksum (a marker in the spool
/// records it), so an upload cut by a crash or a lost network is simply made again, after a
/// restart too. Failures back off exponentially with jitter.
final class UploadService: Service, Sendable {
    let spool: SnapshotSpool
    let uploader: SnapshotUploader
    let backoff: RetryBackoff
    let logger: Logger
    /// Told of each snapshot the receiver confirmed (the audit log prunes only what a confirmed
    /// snapshot's head covers).
    let onConfirmed: @Sendable (SnapshotManifest) -> Void
    private let pool = NIOThreadPool(numberOfThreads: 1)
    /// How often an idle uploader looks for new snapshots (listing the spool costs a readdir).
    private let idle = Duration.seconds(1)

    init(
        spool: SnapshotSpool, uploader: SnapshotUploader, backoff: RetryBackoff, logger: Logger,
        onConfirmed: @escaping @Sendable (SnapshotManifest) -> Void = { _ in }
    ) {
        self.onConfirmed = onConfirmed
        self.spool = spool
        self.uploader = uploader
        self.backoff = backoff
        self.logger = logger
    }

    func run() async throws {
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        // The transfer runs on the pool's thread, which a cancelled task does not stop: abort it.
        // Also on cancellation: a group that stops because a service failed cancels without
        // a graceful shutdown first.
        await withTaskCancellationHandler {
            try? await withGracefulShutdownHandler {
                try? await cancelWhenGracefulShutdown { try await self.loop() }
            } onGracefulShutdown: { [uploader] in
                uploader.abort.abort()
            }
        } onCancel: { [uploader] in
            uploader.abort.abort()
        }
    }

    @_optimize(size)  // cold: an upload every few minutes (the 25 MB budget)
    private func loop() async throws {
        let target = uploader.target.name
        var failures = 0
        while !Task.isCancelled {
            // Listing the spool reads a directory: on the uploader's own thread.
            guard let entry = try await self.pool.runIfActive({ [spool = self.spool] in spool.pending(for: target).first }) else {
                try await Task.sleep(for: self.idle)
                continue
            }
            do {
                let confirmation = try await self.pool.runIfActive { [uploader = self.uploader] in try uploader.upload(entry) }
                try self.spool.markUploaded(entry, to: target, confirmation: confirmation)
                self.onConfirmed(entry.manifest)
                failures = 0
                self.logger.info(
                    "snapshot uploaded", metadata: ["sequence": "\(entry.manifest.sequence)", "confirmation": "\(confirmation)"])
            } catch is CancellationError {
                return
            } catch where uploader.abort.isAborted {
                self.logger.info("snapshot upload stopped: the lead is stopping", metadata: ["sequence": "\(entry.manifest.sequence)"])
                return
            } catch {
                failures += 1
                let delay = self.backoff.delay(afterFailures: failures, random: Double.random(in: 0..<1))
                self.logger.warning(
                    "snapshot upload failed; retrying",
                    metadata: [
                        "sequence": "\(entry.manifest.sequence)", "error": "\(error)", "attempt": "\(failures)",
                        "retry_in_ms": "\(Int(delay.milliseconds))",
                    ])
                try await Task.sleep(for: delay)
            }
        }
    }
}
