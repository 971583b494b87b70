import Glibc
import PimeshAgent
import PimeshCore
import PimeshRuntime
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

    /// A copy made by the kernel (copy_file_range), executable by its owner only.
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
        return destination
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
        Self.removeTree(path)
    }

    private static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in (try? FileIO.list(path)) ?? [] { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

/// The processes a step started: each is stopped (TERM, then KILL after 10 s) when the step
/// ends, however it ends, and an early death of one is an error that names its log.
final class Children: Sendable {
    private struct Child {
        var pid: pid_t
        var name: String
        var log: String
        /// Killed on purpose by the step (a probe agent): its exit is no failure.
        var expectedToExit: Bool
    }

    private let children = Mutex<[Child]>([])

    func start(_ program: String, _ arguments: [String], log: String) throws -> pid_t {
        let output = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw LoadBenchmark.Failure("cannot open \(log): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        let spawned = try ChildProcess.spawn(
            program: program, arguments: arguments, environment: currentEnvironment(), captureOutput: false, outputDescriptor: output)
        let name = (program.split(separator: "/").last.map(String.init) ?? program) + " " + (arguments.first ?? "")
        children.withLock { $0.append(Child(pid: spawned.pid, name: name, log: log, expectedToExit: false)) }
        return spawned.pid
    }

    /// Throws when a child the step still needs has exited.
    func checkAlive() throws {
        let dead: (name: String, log: String, how: String)? = children.withLock { children in
            for index in children.indices where !children[index].expectedToExit {
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

    func kill(_ pid: pid_t, signal: Int32) {
        children.withLock { children in
            guard let index = children.firstIndex(where: { $0.pid == pid }) else { return }
            children[index].expectedToExit = true
            Glibc.kill(pid, signal)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            children.remove(at: index)
        }
    }

    /// Newest first: the swarm leaves before the lead, so that it does not count as lost agents.
    func stopAll() {
        let all = children.withLock { children in
            defer { children.removeAll() }
            return children.reversed()
        }
        for child in all {
            Glibc.kill(child.pid, SIGTERM)
            var status: Int32 = 0
            let deadline = Clock.monotonicNow() + .seconds(10)
            while waitpid(child.pid, &status, WNOHANG) == 0 {
                if Clock.monotonicNow() > deadline {
                    Glibc.kill(child.pid, SIGKILL)
                    waitpid(child.pid, &status, 0)
                    break
                }
                usleep(10_000)
            }
        }
    }
}
