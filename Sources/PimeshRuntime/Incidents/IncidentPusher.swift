import Logging
import NIOPosix
import PimeshAgent
import PimeshCore
import PimeshSnapshot
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// Sends incidents to the coordinator when they open and whenever they change (not only with
/// the next snapshot), signed with the node key, so that `pimesh-coordinator incidents` sees the
/// fleet within seconds. Only the newest version of each incident waits; a failed push is tried
/// again with backoff; the transfer blocks (libcurl), so it runs on a thread of its own.
final class IncidentPusher: Service, Sendable {
    let uploader: SnapshotUploader
    let key: NodeKey
    let logger: Logger
    /// Incidents waiting to go, newest version each; at most this many (the oldest ids give way).
    static let maxPending = 128
    private let pending = Mutex<[Int64: Incident]>([:])
    /// What was last sent of each incident still open, to send only changes.
    private let sent = Mutex<[Int64: String]>([:])
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let every = Duration.milliseconds(250)

    init(uploader: SnapshotUploader, key: NodeKey, logger: Logger) {
        self.uploader = uploader
        self.key = key
        self.logger = logger
    }

    static func fingerprint(_ incident: Incident) -> String {
        "\(incident.state.rawValue)|\(incident.severity)|\(incident.timeline.count)|\(incident.timelineDropped)|\(incident.lastUpdateMs)|\(incident.timeline.last?.atMs ?? 0)|\(incident.playbookRuns?.count ?? 0)"
    }

    /// After each health tick: the open incidents and those just resolved.
    func offer(_ incidents: [Incident]) {
        let changed = sent.withLock { sent in incidents.filter { sent[$0.id] != Self.fingerprint($0) } }
        guard !changed.isEmpty else { return }
        pending.withLock { pending in
            for incident in changed { pending[incident.id] = incident }
            if pending.count > Self.maxPending {
                for id in pending.keys.sorted().prefix(pending.count - Self.maxPending) { pending[id] = nil }
            }
        }
    }

    func run() async throws {
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        // As UploadService does: a push blocked on a stalled coordinator runs on the pool's
        // thread, which cancellation does not reach; abort it, or the lead cannot stop (a
        // stressed make test saw a 30 s stop).
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.pushUntilShutdown()
            } onGracefulShutdown: { [uploader] in
                uploader.abort.abort()
            }
        } onCancel: { [uploader] in
            uploader.abort.abort()
        }
    }

    @_optimize(size)  // cold: an incident now and then (the 25 MB budget)
    private func pushUntilShutdown() async {
        await cancelWhenGracefulShutdownQuietly {
            var failures = 0
            while !Task.isCancelled {
                let batch = self.pending.withLock { pending in
                    defer { pending.removeAll() }
                    return pending.values.sorted { $0.id < $1.id }
                }
                var failed: [Incident] = []
                for incident in batch {
                    do {
                        let body = try APICoding.encode(incident)
                        let signature = try self.key.sign(body)
                        _ = try await self.pool.runIfActive { [uploader = self.uploader, nodeID = self.key.nodeID] in
                            try uploader.pushIncident(nodeID: nodeID, id: incident.id, body: body, signature: signature)
                        }
                        self.sent.withLock { sent in
                            if incident.state == .resolved { sent[incident.id] = nil } else { sent[incident.id] = Self.fingerprint(incident) }
                            if sent.count > Self.maxPending { sent.removeAll() }
                        }
                    } catch is CancellationError {
                        return
                    } catch {
                        failed.append(incident)
                        self.logger.warning("incident not sent to the coordinator; retrying", metadata: ["incident": "\(incident.name)", "error": "\(error)"])
                    }
                }
                if !failed.isEmpty {
                    // A newer version offered meanwhile wins over the one that failed.
                    self.pending.withLock { pending in for incident in failed where pending[incident.id] == nil { pending[incident.id] = incident } }
                    failures += 1
                } else if !batch.isEmpty {
                    failures = 0
                }
                let delay = failures == 0 ? self.every : .seconds(Int64(min(30, 1 << min(failures, 5))))
                try? await Task.sleep(for: delay)
            }
        }
    }
}

/// Runs `body` until the service group shuts down, without the CancellationError.
func cancelWhenGracefulShutdownQuietly(_ body: @escaping @Sendable () async -> Void) async {
    try? await cancelWhenGracefulShutdown { await body() }
}
