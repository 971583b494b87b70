import CSpawn
import Glibc
import Synchronization

/// Sees each watched process end the moment it does, on a thread of its own, and tells whoever
/// watches it: a crash is seen when it happens, not after missed heartbeats.
///
/// One pidfd per process (pidfd_open, Linux 5.3) in one poll, so an idle lead sleeps until
/// something exits. The lead's own children are reaped by pid (`waitpid(pid)`), never with
/// `waitpid(-1)`: another part of the process may have children of its own, and a status saved
/// for a pid could be matched to a later process that reuses it (issue 20). Processes adopted
/// after a lead restart are not the lead's children: their end is seen, their status went to
/// whoever reaped them. Where pidfd_open is refused (an old kernel, a seccomp filter) the
/// reaper checks those pids every 100 ms instead.
final class ChildReaper: Sendable {
    /// `waitStatus`: nil when the process was not the lead's child (adopted), so nobody here
    /// can know how it ended.
    typealias Handler = @Sendable (_ pid: pid_t, _ waitStatus: Int32?) -> Void

    private struct Watched {
        var handler: Handler
        var pidfd: Int32
        var child: Bool
        /// For adopted processes without a pidfd: a different start time means the pid is reused.
        var startTime: UInt64
    }

    private struct State {
        var watched: [pid_t: Watched] = [:]
        var running = false
        var stopping = false
    }

    private let state = Mutex(State())
    /// Wakes the poll when the watch list changes: [read, write], non-blocking, close-on-exec.
    private let wake: [Int32]

    init() {
        var ends: [Int32] = [-1, -1]
        if pimesh_pipe_cloexec(&ends) == 0 {
            for fd in ends { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }
        }
        wake = ends
    }

    deinit {
        for fd in wake where fd >= 0 { close(fd) }
    }

    /// Call right after spawning `pid` (a child of the lead), with what to do when it exits.
    /// The child cannot be reaped before this, so its exit is never missed.
    func watch(_ pid: pid_t, handler: @escaping Handler) {
        add(pid, Watched(handler: handler, pidfd: pimesh_pidfd_open(pid), child: true, startTime: 0))
    }

    /// Watches a process that is not the lead's child (an agent adopted after a restart).
    /// `startTime` (from `pimesh_process_start_time`) is its identity.
    func watchAdopted(_ pid: pid_t, startTime: UInt64, handler: @escaping Handler) {
        add(pid, Watched(handler: handler, pidfd: pimesh_pidfd_open(pid), child: false, startTime: startTime))
    }

    private func add(_ pid: pid_t, _ watched: Watched) {
        let (start, replaced) = state.withLock { state -> (Bool, Watched?) in
            let replaced = state.watched.removeValue(forKey: pid)
            state.watched[pid] = watched
            if state.running { return (false, replaced) }
            state.running = true
            state.stopping = false
            return (true, replaced)
        }
        if let replaced {
            // The pid is someone else's now, so the process watched under it has ended (an
            // adopted agent whose end the loop had not handled yet): say so, and never let its
            // handler fire for the new process.
            if replaced.pidfd >= 0 { close(replaced.pidfd) }
            replaced.handler(pid, nil)
        }
        if start { startThread() } else { poke() }
    }

    func stop() {
        state.withLock { $0.stopping = true }
        poke()
    }

    private func poke() {
        var one: UInt8 = 1
        _ = write(wake[1], &one, 1)
    }

    private func startThread() {
        let reaper = Unmanaged.passRetained(self)
        var thread = pthread_t()
        pthread_create(&thread, nil, { context in
            Unmanaged<ChildReaper>.fromOpaque(context!).takeRetainedValue().loop()
            return nil
        }, reaper.toOpaque())
        pthread_detach(thread)
    }

    private func loop() {
        while true {
            let (watched, stopping) = state.withLock { state in (state.watched.map { ($0.key, $0.value) }, state.stopping) }
            if stopping { break }
            var fds = watched.filter { $0.1.pidfd >= 0 }.map { pollfd(fd: $0.1.pidfd, events: Int16(POLLIN), revents: 0) }
            fds.append(pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0))
            let checksByPid = watched.contains { $0.1.pidfd < 0 }
            let ready = poll(&fds, nfds_t(fds.count), checksByPid ? 100 : -1)
            if ready < 0 && errno != EINTR { break }
            if fds.last!.revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wake[0], &drain, drain.count) > 0 {}
            }
            let readable = Set(fds.dropLast().filter { $0.revents != 0 }.map(\.fd))
            for (pid, entry) in watched where entry.pidfd < 0 || readable.contains(entry.pidfd) {
                let current = state.withLock { state in state.watched[pid].map { $0.pidfd == entry.pidfd } ?? false }
                // Replaced meanwhile: `add` closed this pidfd and told its watcher.
                guard current, case .ended(let waitStatus) = progress(of: pid, entry) else { continue }
                let handler: Handler? = state.withLock { state in
                    guard let current = state.watched[pid], current.pidfd == entry.pidfd else { return nil }
                    state.watched[pid] = nil
                    return current.handler
                }
                guard let handler else { continue }
                if entry.pidfd >= 0 { close(entry.pidfd) }
                handler(pid, waitStatus)
            }
        }
        state.withLock { state in
            for entry in state.watched.values where entry.pidfd >= 0 { close(entry.pidfd) }
            state.watched.removeAll()
            state.running = false
        }
    }

    private enum Progress {
        case running
        case ended(waitStatus: Int32?)
    }

    private func progress(of pid: pid_t, _ entry: Watched) -> Progress {
        if entry.child {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return .ended(waitStatus: status) }
            // ECHILD: something else reaped it; it is gone all the same.
            if result < 0 && errno == ECHILD { return .ended(waitStatus: nil) }
            return .running
        }
        if entry.pidfd >= 0 { return .ended(waitStatus: nil) }
        return pimesh_process_start_time(pid) == entry.startTime ? .running : .ended(waitStatus: nil)
    }
}
