import Glibc
import PimeshAgent

/// Starts a child with posix_spawn: its own process group (a Ctrl-C at the lead's terminal is
/// the lead's to handle), default signal dispositions and an empty mask (the lead ignores and
/// blocks signals for its own handling; children must not inherit that), stdin from /dev/null
/// and stdout/stderr into one pipe whose read end the caller gets.
enum ChildProcess {
    struct Spawned {
        var pid: pid_t
        /// Read end of the child's stdout+stderr; nil when output was not captured.
        var output: Int32?
    }

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// `program` is an absolute path or a name searched in PATH (of `environment`).
    static func spawn(program: String, arguments: [String], environment: [String], captureOutput: Bool) throws -> Spawned {
        var pipeFDs: [Int32] = [-1, -1]
        if captureOutput {
            // Spawns happen one at a time on the supervisor, so the window before FD_CLOEXEC is
            // set cannot leak these ends into another child.
            guard pipe(&pipeFDs) == 0 else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
            _ = fcntl(pipeFDs[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(pipeFDs[1], F_SETFD, FD_CLOEXEC)
        }
        defer {
            if pipeFDs[1] >= 0 { close(pipeFDs[1]) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if captureOutput {
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
            posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = [program] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        var cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid: pid_t = 0
        let status: Int32
        if program.contains("/") {
            status = posix_spawn(&pid, program, &actions, &attributes, &cArguments, &cEnvironment)
        } else {
            guard let resolved = resolve(program, environment: environment) else {
                if captureOutput { close(pipeFDs[0]) }
                throw SpawnError(description: "\(program): not found in PATH")
            }
            status = posix_spawn(&pid, resolved, &actions, &attributes, &cArguments, &cEnvironment)
        }
        guard status == 0 else {
            if captureOutput { close(pipeFDs[0]) }
            throw SpawnError(description: "cannot start \(program): \(String(cString: strerror(status)))")
        }
        return Spawned(pid: pid, output: captureOutput ? pipeFDs[0] : nil)
    }

    /// PATH lookup against the child's environment, as execvp would do it.
    static func resolve(_ program: String, environment: [String]) -> String? {
        let path = environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = directory + "/" + program
            if FileIO.isExecutable(candidate) { return candidate }
        }
        return nil
    }

    /// "exited with status 3", "killed by signal 9 (KILL)".
    static func describe(waitStatus status: Int32) -> (text: String, clean: Bool) {
        let signal = status & 0x7f
        if signal == 0 {
            let code = (status >> 8) & 0xff
            return ("exited with status \(code)", code == 0)
        }
        let names: [Int32: String] = [
            SIGKILL: "KILL", SIGTERM: "TERM", SIGSEGV: "SEGV", SIGABRT: "ABRT", SIGINT: "INT", SIGHUP: "HUP", SIGBUS: "BUS",
            SIGILL: "ILL", SIGFPE: "FPE", SIGPIPE: "PIPE", SIGTRAP: "TRAP",
        ]
        return ("killed by signal \(signal)" + (names[signal].map { " (\($0))" } ?? ""), false)
    }
}
