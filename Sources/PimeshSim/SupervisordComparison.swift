import CSpawn
import Glibc
import PimeshAgent
import PimeshCore
import PimeshRuntime
import PimeshSystem

/// supervisord beside the lead, in the same run: as many programs as the step has agents
/// (`sleep`, which costs supervisord what any idle program costs it), on a private unix socket
/// in the step's scratch directory, so that it neither needs nor touches a system supervisord.
struct SupervisordComparison {
    let pid: pid_t
    let version: String
    let programs: Int

    /// supervisord from PATH (Debian's `supervisor` package or PyPI's), or an error that says how
    /// to get it. Python may print warnings beside the version.
    static func version() throws -> String {
        guard let path = ChildProcess.resolve("supervisord", environment: currentEnvironment()) else {
            throw LoadBenchmark.Failure(
                "--compare supervisord: supervisord is not on PATH (apt-get install supervisor, or pip install supervisor)")
        }
        let output = try runToEnd(path, ["--version"]).output
        // Output mixed with warnings: the last line that reads like a version.
        let version = output.split(separator: "\n").map(\.trimmingSpaces)
            .last { line in line.first?.isNumber == true && line.allSatisfy { $0.isNumber || $0 == "." || $0.isLetter } }
        guard let version else { throw LoadBenchmark.Failure("\(path) --version printed no version") }
        return version
    }

    static func start(programs: Int, directory: String, version: String, children: Children) async throws -> SupervisordComparison {
        try FileIO.makeDirectories(directory, mode: 0o700)
        let configuration = """
            [unix_http_server]
            file=\(directory)/supervisor.sock
            chmod=0700

            [supervisord]
            nodaemon=true
            logfile=\(directory)/supervisord.log
            pidfile=\(directory)/supervisord.pid
            childlogdir=\(directory)
            minfds=\(max(1024, programs * 4 + 64))

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            [program:sleeper]
            command=/bin/sleep infinity
            process_name=%(program_name)s_%(process_num)05d
            numprocs=\(programs)
            autorestart=true
            startsecs=0
            stdout_logfile=NONE
            stderr_logfile=NONE

            """
        try FileIO.writeAtomically(path: directory + "/supervisord.conf", bytes: Array(configuration.utf8), mode: 0o600)
        guard let path = ChildProcess.resolve("supervisord", environment: currentEnvironment()) else {
            throw LoadBenchmark.Failure("supervisord is not on PATH")
        }
        let pid = try children.start(path, ["-c", directory + "/supervisord.conf"], log: directory + "/output.log")
        let comparison = SupervisordComparison(pid: pid, version: version, programs: programs)
        let deadline = Clock.monotonicNow() + .seconds(60 + Int64(programs / 10))
        while comparison.children().count < programs {
            try children.checkAlive()
            if Clock.monotonicNow() > deadline {
                throw LoadBenchmark.Failure(
                    "supervisord started \(comparison.children().count) of \(programs) programs in time; see \(directory)/supervisord.log")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return comparison
    }

    /// Its programs' pids. PyPI's supervisord may be started through a shim that execs it, so its
    /// pid is the one spawned.
    func children() -> Set<pid_t> {
        let text = (try? FileIO.readText(path: "/proc/\(pid)/task/\(pid)/children")) ?? ""
        return Set(text.split(separator: " ").compactMap { pid_t($0.trimmingSpaces) })
    }

    /// kill -9 of one program until a new one stands in its place (supervisord's respawn).
    func killOneAndTimeRespawn() async throws -> Double {
        let before = children()
        guard let victim = before.min() else { throw LoadBenchmark.Failure("supervisord has no programs running") }
        var killedAt = Clock.monotonicNow()
        try signalOwned(victim, SIGKILL) {
            let stillOurs = (try? FileIO.readText(path: "/proc/\(victim)/stat")).flatMap(ProcessMeter.parentPID(stat:)) == pid
            killedAt = Clock.monotonicNow()
            return stillOurs
        }
        let deadline = killedAt + .seconds(30)
        while true {
            let now = children()
            if !now.contains(victim), now.count >= before.count {
                return (Clock.monotonicNow() - killedAt).milliseconds
            }
            if Clock.monotonicNow() > deadline { throw LoadBenchmark.Failure("supervisord did not respawn a program within 30 s") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// Runs a supervisor's own tool (`supervisord --version`, `systemctl`, `systemd-run`) to its end:
/// what it wrote (stdout and stderr, at most 64 KiB) and its wait status (0: exited 0). One that
/// is still running after `timeout` is killed.
func runToEnd(_ path: String, _ arguments: [String], timeout: Duration = .seconds(10)) throws -> (output: String, status: Int32) {
    var pipe: [Int32] = [-1, -1]
    guard pimesh_pipe_cloexec(&pipe) == 0 else { throw LoadBenchmark.Failure("pipe: \(String(cString: strerror(errno)))") }
    defer { close(pipe[0]) }
    let spawned: ChildProcess.Spawned
    do {
        defer { close(pipe[1]) }
        spawned = try ChildProcess.spawn(
            program: path, arguments: arguments, environment: currentEnvironment(), captureOutput: false, outputDescriptor: pipe[1])
    }
    var output: [UInt8] = []
    let deadline = Clock.monotonicNow() + timeout
    var buffer = [UInt8](repeating: 0, count: 4096)
    while output.count < 65_536, Clock.monotonicNow() < deadline {
        var poller = pollfd(fd: pipe[0], events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 100) >= 0 || errno == EINTR else { break }
        guard poller.revents != 0 else { continue }
        let count = buffer.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress, $0.count) }
        if count < 0, errno == EINTR { continue }
        if count <= 0 { break }
        output += buffer[0..<count]
    }
    Glibc.kill(spawned.pid, SIGKILL)  // no-op once it has exited; ends it if it hangs
    var status: Int32 = 0
    while waitpid(spawned.pid, &status, 0) < 0, errno == EINTR {}
    return (String(decoding: output, as: UTF8.self), status)
}

func currentEnvironment() -> [String] {
    var environment: [String] = []
    var entry = environ
    while let pointer = entry.pointee {
        environment.append(String(cString: pointer))
        entry += 1
    }
    return environment
}
