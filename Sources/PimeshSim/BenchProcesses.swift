import CSpawn
import Glibc
import PimeshAgent
import PimeshCore
import PimeshRuntime
import PimeshSystem
import Synchronization

/// A benchmark step's scratch directory: the lead's data dir (0700, as the lead requires), the
/// private binary copies and the logs. Removed when the step succeeds, kept when it fails.
struct Scratch {
    let path: String

    init(parent: String) throws {
        var template = Array("\(parent)/pimesh-bench.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LoadBenchmark.Failure("cannot make a scratch directory in \(parent): \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    /// A copy executable by its owner only, written to storage and dropped from the page cache,
    /// as an installed binary is after a boot. A fresh copy's pages stay in the cache in the
    /// folios its writes made (1 MiB here, on a kernel whose ext4 keeps large folios), and
    /// every fault of the lead then maps a whole folio: measured on kernel 6.18, 11.1 MiB of
    /// resident code against 7.0 for the same lead started from a cold binary.
    func copy(_ source: String, as name: String) throws -> String {
        let destination = path + "/" + name
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw LoadBenchmark.Failure("cannot read \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o700)
        guard output >= 0 else { throw LoadBenchmark.Failure("cannot write \(destination): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw LoadBenchmark.Failure("cannot read \(source): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            var written = 0
            while written < count {
                let step = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, count - written) }
                if step < 0, errno == EINTR { continue }
                guard step > 0 else { throw LoadBenchmark.Failure("cannot write \(destination): \(String(cString: strerror(errno)))") }
                written += step
            }
        }
        guard fsync(output) == 0 else { throw LoadBenchmark.Failure("cannot sync \(destination): \(String(cString: strerror(errno)))") }
        // Clean after the sync, so the kernel can drop every page of it.
        _ = posix_fadvise(output, 0, 0, POSIX_FADV_DONTNEED)
        return destination
    }

    /// The lead's config: room for every agent of the step (the probes included), all admitted
    /// in one burst. The gate's defaults (a burst of 200, then 20 a second) guard a node in the
    /// field; the benchmark measures the steady state.
    func writeLeadConfig(agents: Int) throws -> String {
        let config = """
            {"agents": {"max_registered": \(max(1024, agents)), "registrations_per_s": 2000, "registration_burst": \(max(200, agents))}}
            """
        let path = self.path + "/lead-config.json"
        try FileIO.writeAtomically(path: path, bytes: Array(config.utf8), mode: 0o600)
        return path
    }

    /// Without capabilities: the tasks go to the swarm, and a kill never strands one.
    func writeSupervisedManifests(count: Int, binary: String) throws {
        try FileIO.makeDirectories(path + "/agents.d", mode: 0o700)
        for index in 1...count {
            let name = "bench-supervised-\(index)"
            let manifest = """
                {"name": "\(name)", "command": "\(binary)", "args": ["sim-agent"],
                 "restart": {"stable_after_s": \(LoadBenchmark.supervisedStableAfterSeconds)}}
                """
            try FileIO.writeAtomically(path: "\(path)/agents.d/\(name).json", bytes: Array(manifest.utf8), mode: 0o600)
        }
    }

    func remove() {
        FileIO.removeTree(path)
    }
}

/// The processes a step started: each is stopped when the step ends, however it ends, and an
/// early death of one is an error that names its log. The bench is a subreaper, so that what a
/// lead or supervisord started and left behind is found and stopped too.
final class Children: Sendable {
    private struct Child {
        var pid: pid_t
        var name: String
        var log: String
    }

    /// The lead stops its agents within their stop timeout (5 s by default) before it exits.
    static let stopGrace: Duration = .seconds(20)
    private let children = Mutex<[Child]>([])
    /// Clock ticks since boot when this set was made: only a process started later can be an
    /// orphan of one of its children. Children of the bench's own process from before it was
    /// exec'd (a `tee` of its output) are older and are left alone.
    private let bornAfterTicks: UInt64

    init() {
        _ = pimesh_become_subreaper()
        bornAfterTicks = Self.ticksSinceBoot()
    }

    static func ticksSinceBoot() -> UInt64 {
        let uptime = (try? FileIO.readText(path: "/proc/uptime")).flatMap { $0.split(separator: " ").first.flatMap { Double($0) } } ?? 0
        return UInt64(uptime * Double(sysconf(Int32(_SC_CLK_TCK))))
    }

    func start(_ program: String, _ arguments: [String], log: String) throws -> pid_t {
        let output = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw LoadBenchmark.Failure("cannot open \(log): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        let spawned = try ChildProcess.spawn(
            program: program, arguments: arguments, environment: currentEnvironment(), captureOutput: false, outputDescriptor: output)
        let name = (program.split(separator: "/").last.map(String.init) ?? program) + " " + (arguments.first ?? "")
        children.withLock { $0.append(Child(pid: spawned.pid, name: name, log: log)) }
        return spawned.pid
    }

    /// Throws when a child the step still needs has exited.
    func checkAlive() throws {
        let dead: (name: String, log: String, how: String)? = children.withLock { children in
            for index in children.indices {
                var status: Int32 = 0
                if waitpid(children[index].pid, &status, WNOHANG) == children[index].pid {
                    // Reaped: its pid may be reused, so it must not be signalled again.
                    let child = children.remove(at: index)
                    return (child.name, child.log, ChildProcess.describe(waitStatus: status).text)
                }
            }
            return nil
        }
        if let dead { throw LoadBenchmark.Failure("\(dead.name) \(dead.how); see \(dead.log)") }
    }

    /// Stops one child on purpose (a probe agent) and reaps it.
    func kill(_ pid: pid_t, signal: Int32) {
        let owned = children.withLock { children -> Bool in
            guard let index = children.firstIndex(where: { $0.pid == pid }) else { return false }
            children.remove(at: index)
            return true
        }
        guard owned else { return }
        Glibc.kill(pid, signal)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
    }

    /// TERM to every child at once, newest first (the swarm leaves before the lead, so that its
    /// agents do not count as lost), one shared deadline, then KILL; then whatever they left behind.
    func stopAll() {
        let all = children.withLock { children in
            defer { children.removeAll() }
            return Array(children.reversed())
        }
        for child in all { Glibc.kill(child.pid, SIGTERM) }
        let deadline = Clock.monotonicNow() + Self.stopGrace
        var running = all.map(\.pid)
        while !running.isEmpty {
            running.removeAll { pid in
                var status: Int32 = 0
                return waitpid(pid, &status, WNOHANG) != 0
            }
            if running.isEmpty { break }
            if Clock.monotonicNow() > deadline {
                for pid in running {
                    Glibc.kill(pid, SIGKILL)
                    var status: Int32 = 0
                    waitpid(pid, &status, 0)
                }
                break
            }
            usleep(10_000)
        }
        stopOrphans()
    }

    /// Processes that were reparented to the bench (it is their subreaper): agents of a lead that
    /// had to be killed, programs of a supervisord that was.
    func stopOrphans(procRoot: String = "/proc") {
        let me = getpid()
        for _ in 0..<5 {
            var orphans: [pid_t] = []
            for entry in (try? FileIO.list(procRoot)) ?? [] {
                guard let pid = pid_t(entry), let stat = try? FileIO.readText(path: "\(procRoot)/\(entry)/stat"),
                    ProcessMeter.parentPID(stat: stat) == me, pimesh_process_start_time(pid) >= bornAfterTicks
                else { continue }
                orphans.append(pid)
            }
            if orphans.isEmpty { return }
            for pid in orphans {
                Glibc.kill(pid, SIGKILL)
                var status: Int32 = 0
                waitpid(pid, &status, 0)
            }
        }
    }
}

/// Sends a signal to a process this bench did not start (a supervised agent, a supervisord
/// program) only while it is still the one meant: the pidfd pins the process, and `stillIt`
/// is asked after it was opened, so that a pid reused in between is never signalled.
/// Returns the wall-clock time just before the signal, which latencies are measured from.
@discardableResult
func signalOwned(_ pid: pid_t, _ signal: Int32, stillIt: () -> Bool) throws -> Int64 {
    let descriptor = pimesh_pidfd_open(pid)
    guard descriptor >= 0 else { throw LoadBenchmark.Failure("pid \(pid) is gone: \(String(cString: strerror(errno)))") }
    defer { close(descriptor) }
    guard stillIt() else { throw LoadBenchmark.Failure("pid \(pid) is no longer the process it was") }
    let sentAt = Clock.wallMilliseconds()
    guard pimesh_pidfd_send_signal(descriptor, signal) == 0 else {
        throw LoadBenchmark.Failure("cannot signal pid \(pid): \(String(cString: strerror(errno)))")
    }
    return sentAt
}
