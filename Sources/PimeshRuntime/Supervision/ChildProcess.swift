import CSpawn
import Glibc
import PimeshAgent
import PimeshSystem

/// Starts a child: its own process group (a Ctrl-C at the lead's terminal is the lead's to
/// handle), default signal dispositions and an empty mask (the lead ignores and blocks signals
/// for its own handling; children must not inherit that), stdin from /dev/null or the
/// caller's descriptor, stdout and stderr into one pipe whose read end the caller gets, no other
/// descriptor of the lead's but one passed on purpose (issue 12: agents once inherited the API
/// listener and the heartbeat sockets), and the user it is to run as.
package enum ChildProcess {
    package struct Spawned {
        package var pid: pid_t
        /// Read end of the child's stdout+stderr; nil when output was not captured.
        package var output: Int32?
    }

    package struct SpawnError: Error, CustomStringConvertible {
        package var description: String
    }

    /// `program` is an absolute path or a name searched in PATH (of `environment`).
    /// `inputDescriptor`: the child's stdin, still the caller's to close; else /dev/null.
    /// `outputDescriptor`: the child's stdout+stderr, still the caller's to close (a supervised
    /// agent's log FIFO); else a new pipe when `captureOutput`, else /dev/null.
    /// `passedDescriptor`: kept open in the child under the same number (3 or above), still the
    /// caller's to close.
    /// `beforeRunning`: called with the child's pid while the child waits, before it runs the
    /// program (a supervised agent's pid is recorded there, so that no lead killed at that
    /// moment leaves a process the next lead does not know); if it throws, the child ends
    /// without running and the error is thrown.
    package static func spawn(
        program: String, arguments: [String], environment: [String], captureOutput: Bool, inputDescriptor: Int32? = nil,
        outputDescriptor: Int32? = nil, passedDescriptor: Int32? = nil,
        identity: ProcessIdentity? = nil, beforeRunning: ((pid_t) throws -> Void)? = nil
    ) throws -> Spawned {
        let captureOutput = captureOutput && outputDescriptor == nil
        var pipeFDs: [Int32] = [-1, -1]
        if captureOutput {
            let error = pimesh_pipe_cloexec(&pipeFDs)
            guard error == 0 else { throw SpawnError(description: "pipe: \(String(cString: strerror(error)))") }
        }
        defer {
            if pipeFDs[1] >= 0 { close(pipeFDs[1]) }
        }
        let path: String
        if program.contains("/") {
            path = program
        } else {
            guard let resolved = resolve(program, environment: environment) else {
                if captureOutput { close(pipeFDs[0]) }
                throw SpawnError(description: "\(program): not found in PATH")
            }
            path = resolved
        }
        let argv = [program] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        var cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid: pid_t = 0
        var step: Int32 = 0
        var held: [Int32] = [-1, -1]
        let groups = identity?.groups ?? []
        var error = groups.withUnsafeBufferPointer { groupBuffer in
            pimesh_spawn(
                path, &cArguments, &cEnvironment, inputDescriptor ?? -1, outputDescriptor ?? (captureOutput ? pipeFDs[1] : -1),
                passedDescriptor ?? -1, identity == nil ? 0 : 1, identity?.uid ?? 0,
                identity?.gid ?? 0, groupBuffer.baseAddress, groupBuffer.count, beforeRunning == nil ? 0 : 1, &pid, &held, &step)
        }
        var refusal: (any Error)?
        if error == 0, let beforeRunning {
            do {
                try beforeRunning(pid)
            } catch {
                refusal = error
            }
            error = pimesh_spawn_release(pid, held[0], held[1], refusal == nil ? 1 : 0, &step)
        }
        if let refusal {
            if captureOutput { close(pipeFDs[0]) }
            throw refusal
        }
        guard error == 0 else {
            if captureOutput { close(pipeFDs[0]) }
            let what = switch UInt32(step) {
            case PIMESH_SPAWN_SETGROUPS.rawValue: "set its supplementary groups"
            case PIMESH_SPAWN_SETGID.rawValue: "switch to gid \(identity?.gid ?? 0)"
            case PIMESH_SPAWN_SETUID.rawValue: "switch to uid \(identity?.uid ?? 0)"
            case PIMESH_SPAWN_STDIO.rawValue: "set up its stdin/stdout"
            case PIMESH_SPAWN_CAPABILITIES.rawValue: "drop the lead's ambient capabilities"
            case PIMESH_SPAWN_PASSED_FD.rawValue: "keep its secret's descriptor open"
            default: "start \(path)"
            }
            throw SpawnError(description: "cannot \(what): \(String(cString: strerror(error)))")
        }
        return Spawned(pid: pid, output: captureOutput ? pipeFDs[0] : nil)
    }

    /// PATH lookup against the child's environment, as execvp would do it.
    package static func resolve(_ program: String, environment: [String]) -> String? {
        let path = environment.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = directory + "/" + program
            if FileIO.isExecutable(candidate) { return candidate }
        }
        return nil
    }

    /// "exited with status 3", "killed by signal 9 (KILL)".
    package static func describe(waitStatus status: Int32) -> (text: String, clean: Bool) {
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
