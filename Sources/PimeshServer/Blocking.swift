import NIOPosix

/// Work that can block (SQLite, file reads) runs on NIO's thread pool, never on an event loop
/// or the cooperative pool: a Pi 4B's cooperative pool has four threads, and one slow SD-card
/// read per thread would stall the API, the health tick and the watchdog together.
public enum Blocking {
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }

    /// One thread for the supervisor and the health monitor: spawning, cgroupfs writes, kill,
    /// manifest reads. One thread keeps their steps in order; it lives as long as the process.
    private static let supervisionThread: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    public static func onSupervisionThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await supervisionThread.runIfActive(body)
    }

    /// Queues `body` on the supervision thread from a thread that must not wait (the reaper's),
    /// without a hop through the cooperative pool.
    public static func enqueueOnSupervisionThread(_ body: @escaping @Sendable () -> Void) {
        supervisionThread.submit { state in
            if case .active = state { body() }
        }
    }
}
