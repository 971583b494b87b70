import Glibc
import PimeshAgent
import PimeshSystem

/// Which process each supervised agent runs as, kept in `<run_dir>/supervised` so that a lead
/// started after a `kill -9` takes its agents back instead of starting second copies (issue 12).
/// One line per agent: `NAME PID START_TIME FROZEN LAUNCH`. START_TIME (clock ticks since boot,
/// /proc/PID/stat field 22) makes a recycled pid never pass for the agent; LAUNCH is a digest of
/// what the agent was started with (program, arguments, environment, user), so an agent whose
/// manifest or lead address changed meanwhile is restarted rather than adopted. The file is
/// rewritten whole and renamed into place (0600, in the lead's own run dir); the run dir is
/// tmpfs, so a reboot, which ends the agents, ends the record with them.
struct SupervisedRecords: Sendable {
    struct Entry: Sendable, Equatable {
        var name: String
        var pid: pid_t
        var startTime: UInt64
        var frozen: Bool
        var launch: String
    }

    let path: String

    init(runDir: String) {
        path = runDir + "/supervised"
    }

    /// The entries of a file this lead's user wrote; a line that does not parse is skipped (the
    /// agent is then started afresh, never adopted on a guess).
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    func read() -> [String: Entry] {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == geteuid(),
            let bytes = try? FileIO.read(path: path, limit: 1 << 20)
        else { return [:] }
        var entries: [String: Entry] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 5, let pid = pid_t(fields[1]), pid > 1, let startTime = UInt64(fields[2]), startTime > 0,
                fields[3] == "0" || fields[3] == "1"
            else { continue }
            let name = String(fields[0])
            entries[name] = Entry(name: name, pid: pid, startTime: startTime, frozen: fields[3] == "1", launch: String(fields[4]))
        }
        return entries
    }

    func write(_ entries: [Entry]) throws {
        let text = entries.sorted { $0.name < $1.name }
            .map { "\($0.name) \($0.pid) \($0.startTime) \($0.frozen ? 1 : 0) \($0.launch)\n" }.joined()
        try FileIO.writeAtomically(path: path, bytes: Array(text.utf8), mode: 0o600)
    }
}
