import PimeshCore
import PimeshAgent
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// The shape of every periodic service of the lead: wait an interval, do the work, until a
/// graceful shutdown cancels the wait.
func repeatUntilGracefulShutdown(every interval: Duration, _ body: @escaping @Sendable () async -> Void) async {
    try? await cancelWhenGracefulShutdown {
        while true {
            try await Task.sleep(for: interval)
            await body()
        }
    }
}

/// The shape of the lead's event-driven services: `body` runs when the instant it returned
/// last time has come, or at once when the doorbell rings; when it returns nil, nothing is due
/// and the service sleeps until rung. An idle Pi then spends no wake-ups on it.
func runWhenDue(doorbell: Doorbell, _ body: @escaping @Sendable () async -> Instant?) async {
    try? await cancelWhenGracefulShutdown {
        var next: Instant? = Clock.monotonicNow()
        while !Task.isCancelled {
            await doorbell.wait(timeout: next.map { max(.zero, $0 - Clock.monotonicNow()) })
            next = await body()
        }
    }
}

/// Wakes one waiting service. A ring while nobody waits is kept, so that a change made just
/// before the service went to sleep is not missed.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns when rung (or rung since the last wait), when `timeout` passed, or when cancelled.
    func wait(timeout: Duration?) async {
        if state.withLock({ state in
            let rung = state.rung
            state.rung = false
            return rung
        }) { return }
        if timeout == .zero { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForRing() }
            if let timeout {
                group.addTask { try? await Task.sleep(for: timeout) }
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForRing() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.rung || Task.isCancelled {
                        state.rung = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                let waiter = state.waiter
                state.waiter = nil
                return waiter
            }
            waiter?.resume()
        }
    }
}
