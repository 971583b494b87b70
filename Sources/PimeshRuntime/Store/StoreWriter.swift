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
/// `write` waits until its change is durable — the API answers only then. Such a write does not
/// wait for the next tick: it wakes the writer, which gathers for `durableDelay` (whatever else
/// arrives meanwhile, or during the commit itself, shares it) and commits with
/// `synchronous=FULL` so the change survives a power cut, not only `kill -9`. Background
/// writes (checkpoints, task hand-overs) go through `enqueue`, wait for the tick and keep the
/// cheaper `NORMAL`.
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
    private let durableDelay: Duration
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let queue = Mutex<[Pending]>([])
    private let statistics = Mutex(Stats())

    public init(database: Database, commitInterval: Duration, durableDelay: Duration = .milliseconds(2), logger: Logger) {
        self.database = database
        self.commitInterval = commitInterval
        self.durableDelay = durableDelay
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues a write and returns once it is committed; throws what the write threw.
    public func write(_ write: @escaping Write) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.withLock { $0.append(Pending(write: write, waiter: continuation)) }
            wake.yield()
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
        try? await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while true {
                        try await Task.sleep(for: self.commitInterval)
                        self.wake.yield()
                    }
                }
                for await _ in self.wakeups {
                    let someoneWaits = self.queue.withLock { $0.contains { $0.waiter != nil } }
                    if someoneWaits && self.durableDelay > .zero { try await Task.sleep(for: self.durableDelay) }
                    await self.flush()
                }
                group.cancelAll()
            }
        }
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
