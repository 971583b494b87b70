import Logging
import PimeshCore
import PimeshAgent
import NIOPosix
import PimeshStore
import ServiceLifecycle
import Synchronization

/// The lead's one writer: queued writes are committed together at most every
/// `commitInterval`, and only when something is queued (group commit, DESIGN.md §5).
///
/// `write` waits until its change is durable — the API answers only then. Batches that hold
/// such a write commit with `synchronous=FULL` so they survive a power cut, not only `kill -9`;
/// background checkpoints go through `enqueue` and keep the cheaper `NORMAL`.
public final class StoreWriter: Service, Sendable {
    public typealias Write = @Sendable (Connection) throws -> Void

    struct Pending: Sendable {
        var write: Write
        var waiter: CheckedContinuation<Void, any Error>?
    }

    public struct Stats: Sendable {
        public var commits = 0
        public var lastCommitMs: Double?
    }

    public let database: Database
    private let commitInterval: Duration
    private let logger: Logger
    private let queue = Mutex<[Pending]>([])
    private let statistics = Mutex(Stats())

    public init(database: Database, commitInterval: Duration, logger: Logger) {
        self.database = database
        self.commitInterval = commitInterval
        self.logger = logger
    }

    /// Queues a write and returns once it is committed; throws what the write threw.
    public func write(_ write: @escaping Write) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.withLock { $0.append(Pending(write: write, waiter: continuation)) }
        }
    }

    /// Queues a write nobody waits for; a failure is logged.
    public func enqueue(_ write: @escaping Write) {
        queue.withLock { $0.append(Pending(write: write, waiter: nil)) }
    }

    public var stats: Stats {
        statistics.withLock { $0 }
    }

    public func run() async throws {
        await repeatUntilGracefulShutdown(every: commitInterval) { await self.flush() }
        // Whatever was queued before shutdown is committed before the lead exits.
        await flush()
    }

    /// Commits everything queued now, in one transaction with one savepoint per write, so a
    /// failing write (a duplicate name, say) fails alone.
    public func flush() async {
        let batch = queue.withLock { queue -> [Pending] in
            let taken = queue
            queue.removeAll(keepingCapacity: true)
            return taken
        }
        guard !batch.isEmpty else { return }
        let mustSurvivePowerCut = batch.contains { $0.waiter != nil }
        let started = Clock.monotonicNow()
        let results: [Result<Void, any Error>]
        do {
            results = try await NIOThreadPool.singleton.runIfActive { [database] in
                try Self.commit(batch, to: database, fullSync: mustSurvivePowerCut)
            }
        } catch {
            logger.error("store commit failed", metadata: ["error": "\(error)", "writes": "\(batch.count)"])
            for pending in batch { pending.waiter?.resume(throwing: error) }
            return
        }
        let elapsed = (Clock.monotonicNow() - started).milliseconds
        statistics.withLock {
            $0.commits += 1
            $0.lastCommitMs = elapsed
        }
        for (pending, result) in zip(batch, results) {
            switch result {
            case .success: pending.waiter?.resume()
            case .failure(let error):
                if let waiter = pending.waiter {
                    waiter.resume(throwing: error)
                } else {
                    logger.error("background store write failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    private static func commit(_ batch: [Pending], to database: Database, fullSync: Bool) throws -> [Result<Void, any Error>] {
        try database.withConnection { connection in
            if fullSync { try connection.execute("PRAGMA synchronous=FULL") }
            defer { if fullSync { try? connection.execute("PRAGMA synchronous=NORMAL") } }
            try connection.execute("BEGIN IMMEDIATE")
            var results: [Result<Void, any Error>] = []
            for pending in batch {
                try connection.execute("SAVEPOINT write")
                do {
                    try pending.write(connection)
                    try connection.execute("RELEASE write")
                    results.append(.success(()))
                } catch {
                    try connection.execute("ROLLBACK TO write")
                    try connection.execute("RELEASE write")
                    results.append(.failure(error))
                }
            }
            do {
                try connection.execute("COMMIT")
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
            return results
        }
    }
}
