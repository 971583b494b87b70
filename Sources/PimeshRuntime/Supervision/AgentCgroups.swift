import Glibc
import PimeshAgent
import PimeshSystem

/// cgroup v2 for supervised agents, where systemd delegated the lead's cgroup (`Delegate=yes`):
/// the lead moves itself into a `lead` leaf (no processes may sit in a cgroup that has
/// children), enables the memory controller for its subtree, and gives each agent
/// `agents/NAME` with `memory.max`. Freezing writes `cgroup.freeze`. Without delegation the
/// supervisor falls back to SIGSTOP/SIGCONT and RSS from /proc.
struct AgentCgroups: Sendable {
    /// The lead's own cgroup directory, e.g. /sys/fs/cgroup/system.slice/pimesh.service.
    let base: String

    /// Finds the lead's cgroup v2 directory and checks that the lead may write it; nil when it
    /// is not delegated (the usual case outside systemd with Delegate=yes).
    static func detect(cgroupRoot: String, procSelfCgroup: String) -> AgentCgroups? {
        guard let text = try? FileIO.readText(path: procSelfCgroup) else { return nil }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        let relative = String(line.dropFirst(3))
        let base = cgroupRoot + (relative == "/" ? "" : relative)
        guard FileIO.exists(base + "/cgroup.procs"), access(base, W_OK) == 0, access(base + "/cgroup.procs", W_OK) == 0,
            access(base + "/cgroup.subtree_control", W_OK) == 0
        else { return nil }
        return AgentCgroups(base: base)
    }

    struct CgroupError: Error, CustomStringConvertible {
        var description: String
    }

    /// Moves the lead into `lead/` and opens `agents/` with the memory controller.
    func prepare(leadPID: pid_t) throws {
        try make(base + "/lead")
        try write("\(leadPID)", to: base + "/lead/cgroup.procs")
        // The memory controller may not be delegated; freezing works without it.
        try? write("+memory", to: base + "/cgroup.subtree_control")
        try make(base + "/agents")
        try? write("+memory", to: base + "/agents/cgroup.subtree_control")
    }

    func directory(of name: String) -> String {
        base + "/agents/" + name
    }

    /// Puts a freshly started agent into its own cgroup with its memory limit.
    func place(pid: pid_t, name: String, memoryLimitBytes: UInt64?) throws {
        let directory = directory(of: name)
        try make(directory)
        if FileIO.exists(directory + "/memory.max") {
            try write(memoryLimitBytes.map { String($0) } ?? "max", to: directory + "/memory.max")
        }
        // The cgroup outlives the agent: one frozen before its last exit must not freeze the next.
        if FileIO.exists(directory + "/cgroup.freeze") { try write("0", to: directory + "/cgroup.freeze") }
        try write("\(pid)", to: directory + "/cgroup.procs")
    }

    func freeze(name: String, _ frozen: Bool) throws {
        try write(frozen ? "1" : "0", to: directory(of: name) + "/cgroup.freeze")
    }

    func memoryCurrent(name: String) -> UInt64? {
        (try? FileIO.readText(path: directory(of: name) + "/memory.current")).flatMap {
            $0.split(whereSeparator: { $0 == "\n" || $0 == " " }).first.flatMap { UInt64($0) }
        }
    }

    private func make(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw CgroupError(description: "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    private func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC)
        guard fd >= 0 else { throw CgroupError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw CgroupError(description: "cannot write \(text) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// A process's private resident memory from /proc/PID/statm: resident minus shared pages,
/// what the Pi cannot reclaim. Plain RSS would count the pimesh binary's code pages once per
/// agent; smaps_rollup (PSS) walks page tables and costs too much once a second for 100 agents.
/// The page size comes from sysconf: a Pi 4B kernel may use 4 KiB or 16 KiB pages.
enum ProcessRSS {
    static func bytes(pid: pid_t, procRoot: String) -> UInt64? {
        guard let text = try? FileIO.readText(path: "\(procRoot)/\(pid)/statm") else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 2, let resident = UInt64(fields[1]), let shared = UInt64(fields[2]) else { return nil }
        return (resident > shared ? resident - shared : 0) * UInt64(max(1, sysconf(Int32(_SC_PAGESIZE))))
    }
}
