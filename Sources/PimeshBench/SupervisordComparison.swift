import Glibc
import PimeshAgent
import PimeshCore
import PimeshRuntime

/// supervisord beside the lead, in the same run: as many programs as the step has agents
/// (`sleep`, which costs supervisord what any idle program costs it), on a private unix socket
/// in the step's scratch directory, so that it neither needs nor touches a system supervisord.
struct SupervisordComparison {
    let pid: pid_t
    let version: String
    let programs: Int

    /// supervisord from PATH (Debian's `supervisor` package or PyPI's), or an error that says how to get it.
    static func version() throws -> String {
        guard let path = ChildProcess.resolve("supervisord", environment: currentEnvironment()) else {
            throw LoadBenchmark.Failure(
                "--compare supervisord: supervisord is not on PATH (apt-get install supervisor, or pip install supervisor)")
        }
        let scratch = "/tmp/pimesh-bench-supervisord-version-\(getpid())"
        let output = open(scratch, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw LoadBenchmark.Failure("cannot write \(scratch): \(String(cString: strerror(errno)))") }
        defer {
            close(output)
            unlink(scratch)
        }
        let spawned = try ChildProcess.spawn(
            program: path, arguments: ["--version"], environment: currentEnvironment(), captureOutput: false,
            outputDescriptor: output)
        var status: Int32 = 0
        waitpid(spawned.pid, &status, 0)
        let text = ((try? FileIO.readText(path: scratch)) ?? "").trimmingSpaces
        guard ChildProcess.describe(waitStatus: status).clean, !text.isEmpty else {
            throw LoadBenchmark.Failure("\(path) --version failed: \(text)")
        }
        return text
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
        let killedAt = Clock.monotonicNow()
        kill(victim, SIGKILL)
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

func currentEnvironment() -> [String] {
    var environment: [String] = []
    var entry = environ
    while let pointer = entry.pointee {
        environment.append(String(cString: pointer))
        entry += 1
    }
    return environment
}
