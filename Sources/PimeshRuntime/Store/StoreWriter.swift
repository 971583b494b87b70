import Glibc
import Logging
import PimeshCore
import PimeshAgent
import NIOPosix
import PimeshServer
import PimeshStore
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// The lead's one writer: queued writes are committed together, in the order they were
/// queued, by the writer's own loop and nowhere else (group commit, DESIGN.md §5).
///
/// `write` waits until its change is durable — the API answers only then. Such a write wakes
/// the writer, which gathers for `durableDelay` (whatever else arrives meanwhile, or during the
/// commit itself, shares it) and commits with `synchronous=FULL` so the change survives a power
/// cut, not only `kill -9`. Background writes (checkpoints, task hand-overs) go through
/// `enqueue`, are gathered for up to `commitInterval` and keep the cheaper `NORMAL`. With nothing
/// queued the writer sleeps: no periodic wake-up on an idle node.
///
/// When the lead stops, the writer commits what is queued and closes: a write queued after
/// that fails at once instead of waiting for a commit that will never come.
public final class StoreWriter: Service, Sendable {
    public typealias Write = @Sendable (Connection) throws -> Void

    struct Pending: Sendable {
        var write: Write
        var waiter: CheckedContinuation<Void, any Error>?
        /// Writes with one key rewrite one whole row: while they wait, only the newest is kept.
        var key: String? = nil
    }

    public struct Stats: Sendable {
        public var commits = 0
        public var lastCommitMs: Double?
        /// The last 1,000 commits' times: their p99 is the SD card's write latency.
        public var recentCommitMs = SampleRing(capacity: 1000)
        /// Why commits fail now (nil while they succeed), since when, and how many batches in a row.
        public var failing: String?
        public var failingSince: Instant?
        public var failedBatches = 0
        /// Failures not logged yet: while commits keep failing, one line every `failureLogInterval`.
        var unloggedFailures = 0
        var lastFailureLog: Instant?
        var failingForSpace = false
        var lastTry: Instant?
        /// Background writes kept for the next try, and those dropped past `waitingLimit`.
        public var waitingWrites = 0
        public var droppedWrites = 0
    }

    /// A full SD card fails every request that writes: their lines would go to the same card.
    static let failureLogInterval: Duration = .seconds(30)
    /// While commits fail, one try a second: a full disk made the writer try a hundred a second,
    /// half a core, for nothing.
    static let failureRetryInterval: Duration = .seconds(1)
    /// Background writes (task hand-outs, requeues, incidents, checkpoints) kept while commits
    /// fail: what the lead decided meanwhile reaches the store once it has room, instead of the
    /// store and memory disagreeing until a restart acts on the store's stale rows. Keyed ones
    /// keep only their newest, so open tasks and incidents bound them; past this many, the
    /// oldest go.
    static let waitingLimit = 20_000

    /// A write that came after the writer's final commit.
    public struct Closed: Error, CustomStringConvertible {
        public var description: String { "the store is closed: the lead is stopping" }
    }

    struct Queue: Sendable {
        var pending: [Pending] = []
        var closed = false
    }

    public let database: Database
    private let commitInterval: Duration
    private let durableDelay: Duration
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let queue = Mutex(Queue())
    /// Ends a gathering of background writes early when someone waits for a commit.
    private let durableArrived = Doorbell()
    private let statistics = Mutex(Stats())
    /// Told after each batch whether it committed (the audit log moves its chain's tip only
    /// then, so a batch lost to a failed commit leaves no gap), and why the store failed it or
    /// one of its writes: a failed COMMIT, or a write refused for want of space.
    private let batchListeners = Mutex<[@Sendable (_ committed: Bool, _ storageFailure: String?) -> Void]>([])
    /// The writer's own thread: a commit blocks in fsync (hundreds of ms on an SD card) and must
    /// hold up neither the cooperative pool nor the thread pool that reads use.
    private let thread = NIOThreadPool(numberOfThreads: 1)
    /// Fault injection for tests (`PIMESH_FAULT_SLOW_COMMIT_MS`): every commit holds its
    /// transaction this long, as a dying SD card's fsync would.
    private let slowCommit: Duration?

    public init(
        database: Database, commitInterval: Duration, durableDelay: Duration = .milliseconds(2), slowCommit: Duration? = nil,
        logger: Logger
    ) {
        self.database = database
        self.commitInterval = commitInterval
        self.durableDelay = durableDelay
        self.slowCommit = slowCommit
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        thread.start()
    }

    deinit {
        thread.shutdownGracefully { _ in }
    }

    /// Queues a write and returns once it is committed; throws what the write threw, or
    /// `Closed` when the writer has already made its final commit.
    public func write(_ write: @escaping Write) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let accepted = queue.withLock { queue -> Bool in
                guard !queue.closed else { return false }
                queue.pending.append(Pending(write: write, waiter: continuation))
                return true
            }
            guard accepted else { return continuation.resume(throwing: Closed()) }
            wake.yield()
            durableArrived.ring()
        }
    }

    /// Queues a write nobody waits for; a failure is logged. `key` names the row it rewrites
    /// whole (a task, an incident): of writes with one key that wait for a failing store, only
    /// the newest is kept.
    public func enqueue(key: String? = nil, _ write: @escaping Write) {
        let accepted = queue.withLock { queue -> Bool in
            guard !queue.closed else { return false }
            queue.pending.append(Pending(write: write, waiter: nil, key: key))
            return true
        }
        guard accepted else {
            logger.error("background store write after the final commit dropped")
            return
        }
        wake.yield()
    }

    public func onBatchEnd(_ listener: @escaping @Sendable (_ committed: Bool, _ storageFailure: String?) -> Void) {
        batchListeners.withLock { $0.append(listener) }
    }

    public var stats: Stats {
        statistics.withLock { $0 }
    }

    private var someoneWaits: Bool {
        queue.withLock { $0.pending.contains { $0.waiter != nil } }
    }

    private var isIdle: Bool {
        queue.withLock { $0.pending.isEmpty }
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            for await _ in self.wakeups {
                if self.isIdle { continue }
                if self.someoneWaits {
                    if self.durableDelay > .zero { try await Task.sleep(for: self.durableDelay) }
                } else {
                    // Background writes gather for up to commitInterval; a durable write that
                    // arrives meanwhile ends the wait early.
                    await self.durableArrived.wait(timeout: self.commitInterval)
                    try Task.checkCancellation()
                    if self.someoneWaits && self.durableDelay > .zero { try await Task.sleep(for: self.durableDelay) }
                }
                await self.commitQueued()
                // Kept writes are tried again without waiting for a new one: the store catches
                // up within a second of the disk having room.
                while self.isFailing && !self.isIdle {
                    try await Task.sleep(for: Self.failureRetryInterval)
                    await self.commitQueued()
                }
            }
        }
        // Whatever was queued before shutdown is committed before the lead exits; what comes
        // later is refused. A store that still fails keeps nothing for a next try that will
        // not come.
        while true {
            await commitQueued()
            let failing = isFailing
            let (closed, lost) = queue.withLock { queue -> (Bool, Int) in
                let lost = failing ? queue.pending.count : 0
                guard queue.pending.isEmpty || lost > 0 else { return (false, 0) }
                for pending in queue.pending { pending.waiter?.resume(throwing: Closed()) }
                queue.pending.removeAll()
                queue.closed = true
                return (true, lost)
            }
            if lost > 0 { logger.error("store writes not stored at stop: the store still fails", metadata: ["writes": "\(lost)"]) }
            if closed { break }
        }
        wake.finish()
    }

    /// True from a failed commit to the next that succeeds; the writer logs that run itself.
    var isFailing: Bool {
        statistics.withLock { $0.failing != nil }
    }

    /// Puts background writes of a batch the store refused back at the front of the queue,
    /// ahead of what came meanwhile, keeping the newest write of each key and, past
    /// `waitingLimit`, the newest writes.
    private func keep(_ refused: [Pending]) {
        let (waiting, dropped) = queue.withLock { queue -> (Int, Int) in
            let all = refused + queue.pending
            var newest: [String: Int] = [:]
            for (index, pending) in all.enumerated() { if let key = pending.key { newest[key] = index } }
            var kept = all.enumerated().filter { index, pending in pending.key.map { newest[$0] == index } ?? true }.map(\.element)
            var excess = max(0, kept.count - Self.waitingLimit)
            let dropped = excess
            if excess > 0 {
                kept.removeAll { pending in
                    guard excess > 0, pending.waiter == nil else { return false }
                    excess -= 1
                    return true
                }
            }
            queue.pending = kept
            return (kept.count, dropped)
        }
        statistics.withLock {
            $0.waitingWrites = waiting
            $0.droppedWrites += dropped
        }
        if dropped > 0 {
            logger.error("store writes dropped: too many wait for a failing store", metadata: ["dropped": "\(dropped)", "limit": "\(Self.waitingLimit)"])
        }
    }

    /// While the store is full and its file system has not got `Database.nearlyFullBytes` free,
    /// a batch is not tried (one `statvfs` instead of thousands of kept writes run and rolled
    /// back for each request) except once every `fullProbeInterval`.
    static let fullProbeInterval: Duration = .seconds(10)

    private func storeStillFull(at now: Instant) -> Bool {
        let (full, lastTry) = statistics.withLock { ($0.failingForSpace, $0.lastTry) }
        guard full, let lastTry, now - lastTry < Self.fullProbeInterval else { return false }
        return (database.freeBytes ?? .max) < Database.nearlyFullBytes
    }

    private var fullAnswer: APIError {
        // A full disk is the operator's to fix and the caller's to retry once it is: 507 says
        // both, where a bare SQLite error answered 500.
        APIError(
            status: .insufficientStorage, message: "nothing was stored: \(database.storeIsFull); free space there and retry",
            retryAfterSeconds: 5)
    }

    /// Commits everything queued now, in one transaction with one savepoint per write, so a
    /// failing write (a duplicate name, say) fails alone. Only the writer's loop calls it (and
    /// tests, with the loop not running): two commits at once could land out of order.
    func commitQueued() async {
        let batch = queue.withLock { queue -> [Pending] in
            let taken = queue.pending
            queue.pending.removeAll(keepingCapacity: true)
            return taken
        }
        guard !batch.isEmpty else { return }
        let started = Clock.monotonicNow()
        if storeStillFull(at: started) {
            let answer = fullAnswer
            for pending in batch { pending.waiter?.resume(throwing: answer) }
            keep(batch.filter { $0.waiter == nil })
            return
        }
        statistics.withLock { $0.lastTry = started }
        let mustSurvivePowerCut = batch.contains { $0.waiter != nil }
        let results: [Result<Void, any Error>]
        do {
            // In a task of its own: the writer's may be cancelled (the group's stop deadline
            // passed), the thread pool refuses work for a cancelled task, and a taken batch
            // must be committed, not dropped.
            results = try await Task { [database, thread, slowCommit] in
                try await thread.runIfActive {
                    try Self.commit(batch, to: database, fullSync: mustSurvivePowerCut, slowCommit: slowCommit)
                }
            }.value
        } catch {
            // The whole batch failed: a full disk (at a write or at COMMIT), an I/O error. Its
            // background writes are kept, in order, for the next try.
            let outOfSpace = database.isOutOfSpace(error)
            let failure = outOfSpace ? "\(database.storeIsFull): \(error)" : "\(error)"
            noteFailure(failure, outOfSpace: outOfSpace, writes: batch.count)
            for listener in batchListeners.withLock({ $0 }) { listener(false, failure) }
            let answer: any Error = outOfSpace ? fullAnswer : error
            for pending in batch { pending.waiter?.resume(throwing: answer) }
            keep(batch.filter { $0.waiter == nil })
            return
        }
        noteSuccess(since: started)
        for listener in batchListeners.withLock({ $0 }) { listener(true, nil) }
        let elapsed = (Clock.monotonicNow() - started).milliseconds
        statistics.withLock {
            $0.commits += 1
            $0.lastCommitMs = elapsed
            $0.recentCommitMs.add(elapsed)
            $0.waitingWrites = 0
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

    private func noteSuccess(since started: Instant) {
        let recovered = statistics.withLock { stats -> (batches: Int, since: Instant)? in
            // A new run of failures logs its first at once, however soon it comes.
            defer {
                (stats.failing, stats.failingSince, stats.failedBatches, stats.unloggedFailures, stats.lastFailureLog) = (nil, nil, 0, 0, nil)
                stats.failingForSpace = false
            }
            return stats.failingSince.map { (stats.failedBatches, $0) }
        }
        if let recovered {
            logger.notice(
                "store commits succeed again",
                metadata: ["failed_batches": "\(recovered.batches)", "failing_for_ms": "\(Int((started - recovered.since).milliseconds))"])
        }
    }

    /// Logs the first failed commit of a run of them, then one line every `failureLogInterval`
    /// with how many failed meanwhile.
    private func noteFailure(_ failure: String, outOfSpace: Bool, writes: Int) {
        let now = Clock.monotonicNow()
        let unlogged = statistics.withLock { stats -> Int? in
            if stats.failingSince == nil { stats.failingSince = now }
            stats.failing = failure
            stats.failingForSpace = outOfSpace
            stats.failedBatches += 1
            stats.unloggedFailures += 1
            if let last = stats.lastFailureLog, now - last < Self.failureLogInterval { return nil }
            stats.lastFailureLog = now
            defer { stats.unloggedFailures = 0 }
            return stats.unloggedFailures
        }
        guard let unlogged else { return }
        logger.error(
            "store commit failed", metadata: ["error": "\(failure)", "writes": "\(writes)", "failed_batches_since_last_line": "\(unlogged)"])
    }

    private static func commit(
        _ batch: [Pending], to database: Database, fullSync: Bool, slowCommit: Duration?
    ) throws -> [Result<Void, any Error>] {
        try database.withConnection { connection in
            if fullSync { try connection.execute("PRAGMA synchronous=FULL") }
            defer { if fullSync { try? connection.execute("PRAGMA synchronous=NORMAL") } }
            try connection.execute("BEGIN IMMEDIATE")
            var results: [Result<Void, any Error>] = []
            do {
                for pending in batch {
                    try connection.run("SAVEPOINT write")
                    do {
                        try pending.write(connection)
                        try connection.run("RELEASE write")
                        results.append(.success(()))
                    } catch {
                        // Out of space, the batch fails as a whole, in order: committing the
                        // writes that still fit would let a kept older write of a row land
                        // after a newer one. And SQLite may have rolled the transaction back
                        // itself: the writes after this one must not run outside it.
                        guard connection.inTransaction, !database.isOutOfSpace(error) else { throw error }
                        try connection.run("ROLLBACK TO write")
                        try connection.run("RELEASE write")
                        results.append(.failure(error))
                    }
                }
            } catch {
                // Left open, the transaction would fail every later BEGIN until a restart.
                if connection.inTransaction { try? connection.execute("ROLLBACK") }
                throw error
            }
            if let slowCommit {
                let micros = slowCommit.components.seconds * 1_000_000 + slowCommit.components.attoseconds / 1_000_000_000_000
                usleep(UInt32(clamping: micros))
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
