import Glibc
import Synchronization

/// Reaps every child of the lead on a thread of its own and tells whoever started it, at once:
/// a crash is seen when it happens, not after missed heartbeats. A child may exit before its
/// starter has registered it; that exit is kept until it does.
final class ChildReaper: Sendable {
    typealias Handler = @Sendable (_ pid: pid_t, _ waitStatus: Int32) -> Void

    private struct State {
        var handlers: [pid_t: Handler] = [:]
        var early: [pid_t: Int32] = [:]
        var running = false
        var stopping = false
    }

    private let state = Mutex(State())
    private let wake = PThreadCondition()

    /// Call right after spawning `pid`, with what to do when it exits.
    func watch(_ pid: pid_t, handler: @escaping Handler) {
        let early: Int32? = state.withLock { state in
            if let status = state.early.removeValue(forKey: pid) { return status }
            state.handlers[pid] = handler
            return nil
        }
        if let early { handler(pid, early) }
        startIfNeeded()
        wake.signal()
    }

    private func startIfNeeded() {
        let start = state.withLock { state -> Bool in
            if state.running { return false }
            state.running = true
            return true
        }
        guard start else { return }
        let reaper = Unmanaged.passRetained(self)
        var thread = pthread_t()
        pthread_create(&thread, nil, { context in
            let reaper = Unmanaged<ChildReaper>.fromOpaque(context!).takeRetainedValue()
            reaper.loop()
            return nil
        }, reaper.toOpaque())
        pthread_detach(thread)
    }

    func stop() {
        state.withLock { $0.stopping = true }
        wake.signal()
    }

    private func loop() {
        while !state.withLock({ $0.stopping }) {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid > 0 {
                let handler: Handler? = state.withLock { state in
                    if let handler = state.handlers.removeValue(forKey: pid) { return handler }
                    state.early[pid] = status
                    // Bounded: exits nobody claims (children of something else) do not pile up.
                    if state.early.count > 256 { state.early.removeAll() }
                    return nil
                }
                handler?(pid, status)
            } else if errno == ECHILD {
                wake.wait(timeoutMs: 200)
            } else if errno != EINTR {
                wake.wait(timeoutMs: 200)
            }
        }
        state.withLock { $0.running = false }
    }
}

/// A condition variable for the reaper's idle wait; no allocation per wait.
final class PThreadCondition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    func signal() {
        pthread_mutex_lock(mutex)
        signalled = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    func wait(timeoutMs: Int) {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        let nanoseconds = Int(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
        deadline.tv_sec += timeoutMs / 1000 + nanoseconds / 1_000_000_000
        deadline.tv_nsec = nanoseconds % 1_000_000_000
        pthread_mutex_lock(mutex)
        if !signalled { pthread_cond_timedwait(condition, mutex, &deadline) }
        signalled = false
        pthread_mutex_unlock(mutex)
    }
}
