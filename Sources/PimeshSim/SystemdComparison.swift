import Glibc
import PimeshAgent
import PimeshCore
import PimeshRuntime
import PimeshSystem

/// systemd beside the lead, where it is PID 1: as many transient services as the step has
/// agents (`systemd-run`, `Restart=always`, `sleep infinity`), in a slice of the bench's own
/// that is stopped when the step ends, however it ends. Its figures are PID 1's, which manages
/// the rest of the system too: on an idle node that is the baseline a Pi pays anyway.
/// Restarts wait systemd's default `RestartSec` (100 ms), as a unit written without one would;
/// the start limit is off (`StartLimitIntervalSec=0`), as supervisord has none: the bench's
/// kills would otherwise hit `StartLimitBurst` (5 starts in 10 s) when there are few units.
struct SystemdComparison {
    let version: String
    let programs: Int
    let slice: String
    let units: [String]
    let systemctl: String

    static let pid: pid_t = 1

    struct Tools {
        var version: String
        var systemctl: String
        var systemdRun: String
    }

    /// systemd as PID 1, root, and its tools on PATH, or an error that says which is missing.
    static func tools() throws -> Tools {
        var info = stat()
        guard stat("/run/systemd/system", &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw LoadBenchmark.Failure("--compare systemd-run: systemd is not PID 1 here (/run/systemd/system is missing)")
        }
        guard geteuid() == 0 else {
            throw LoadBenchmark.Failure("--compare systemd-run: run as root (it starts transient system services)")
        }
        let environment = currentEnvironment()
        guard let systemctl = ChildProcess.resolve("systemctl", environment: environment),
            let systemdRun = ChildProcess.resolve("systemd-run", environment: environment)
        else { throw LoadBenchmark.Failure("--compare systemd-run: systemctl or systemd-run is not on PATH") }
        // "systemd 252 (252.38-1~deb12u1)"
        let first = try runToEnd(systemctl, ["--version"]).output.split(separator: "\n").first.map(String.init) ?? ""
        let words = first.split(separator: " ")
        guard words.count >= 2, words[0] == "systemd", words[1].allSatisfy(\.isNumber) else {
            throw LoadBenchmark.Failure("\(systemctl) --version printed no systemd version: \(first)")
        }
        return Tools(version: String(words[1]), systemctl: systemctl, systemdRun: systemdRun)
    }

    /// Unit names may not hold a dash in a slice's name (it means a parent slice): underscores.
    static func slice(step: Int) -> String { "pimesh_bench_\(getpid())_\(step).slice" }

    static func start(programs: Int, step: Int, tools: Tools, children: Children) async throws -> SystemdComparison {
        let slice = slice(step: step)
        let base = String(slice.dropLast(".slice".count))
        let units = (1...programs).map { "\(base)_\(String.zeroPadded($0, width: 5)).service" }
        let comparison = SystemdComparison(version: tools.version, programs: programs, slice: slice, units: units, systemctl: tools.systemctl)
        do {
            for unit in units {
                try Task.checkCancellation()
                try children.checkAlive()
                let started = try runToEnd(
                    tools.systemdRun,
                    [
                        "--quiet", "--no-block", "--collect", "--unit=\(unit)", "--slice=\(slice)", "--property=Restart=always",
                        "--property=StartLimitIntervalSec=0", "/bin/sleep", "infinity",
                    ])
                guard started.status == 0 else {
                    throw LoadBenchmark.Failure("systemd-run --unit=\(unit) failed: \(started.output.trimmingSpaces)")
                }
            }
            let deadline = Clock.monotonicNow() + .seconds(60 + Int64(programs / 10))
            while try comparison.mainPIDs().values.contains(0) {
                try children.checkAlive()
                if Clock.monotonicNow() > deadline {
                    let running = try comparison.mainPIDs().values.filter { $0 != 0 }.count
                    throw LoadBenchmark.Failure("systemd started \(running) of \(programs) services in time (systemctl status \(slice))")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        } catch {
            comparison.stop()
            throw error
        }
        return comparison
    }

    /// Each unit's main process, 0 while it has none (not started yet, or between restarts).
    func mainPIDs(of wanted: [String]? = nil) throws -> [String: pid_t] {
        let wanted = wanted ?? units
        var pids: [String: pid_t] = [:]
        // Batches keep the command line far below ARG_MAX at 10,000 units.
        for start in stride(from: 0, to: wanted.count, by: 500) {
            let batch = Array(wanted[start..<min(wanted.count, start + 500)])
            let shown = try runToEnd(systemctl, ["show", "--property=Id,MainPID"] + batch, timeout: .seconds(30))
            guard shown.status == 0 else { throw LoadBenchmark.Failure("systemctl show failed: \(shown.output.trimmingSpaces)") }
            pids.merge(Self.mainPIDs(shown: shown.output)) { _, new in new }
        }
        // A unit systemctl did not answer for counts as not started, never as running.
        for unit in wanted where pids[unit] == nil { pids[unit] = 0 }
        return pids
    }

    /// `systemctl show --property=Id,MainPID` of several units: a block of `KEY=value` lines
    /// each, in no promised order, blocks apart by an empty line.
    static func mainPIDs(shown: String) -> [String: pid_t] {
        var pids: [String: pid_t] = [:]
        var id: String?
        var mainPID: pid_t?
        for line in shown.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) + [""] {
            if line.isEmpty {
                if let id { pids[id] = mainPID ?? 0 }
                id = nil
                mainPID = nil
            } else if line.hasPrefix("Id=") {
                id = String(line.dropFirst(3))
            } else if line.hasPrefix("MainPID=") {
                mainPID = pid_t(line.dropFirst(8))
            }
        }
        return pids
    }

    /// kill -9 of one service's process until systemd has started its replacement. The new
    /// process is seen in the unit's cgroup (its `cgroup.procs`), read every millisecond: the
    /// moment systemd has forked it, before `sleep` runs. Each trial takes the next unit, so
    /// that a restart is measured on a unit that has been quiet for longest.
    func killOneAndTimeRespawn(trial: Int) async throws -> Double {
        let unit = units[trial % units.count]
        guard let victim = try mainPIDs(of: [unit])[unit], victim != 0 else { throw LoadBenchmark.Failure("\(unit) has no process running") }
        guard let procs = Self.cgroupProcsFile(pid: victim, unit: unit) else {
            throw LoadBenchmark.Failure("cannot find the cgroup of \(unit) (pid \(victim))")
        }
        var killedAt = Clock.monotonicNow()
        try signalOwned(victim, SIGKILL) {
            let stillOurs = Self.cgroupProcsFile(pid: victim, unit: unit) == procs
            killedAt = Clock.monotonicNow()
            return stillOurs
        }
        let deadline = killedAt + .seconds(30)
        while true {
            let pids = ((try? FileIO.readText(path: procs)) ?? "").split(separator: "\n").compactMap { pid_t($0.trimmingSpaces) }
            if pids.contains(where: { $0 != victim }) { return (Clock.monotonicNow() - killedAt).milliseconds }
            if Clock.monotonicNow() > deadline { throw LoadBenchmark.Failure("systemd did not restart \(unit) within 30 s") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// The `cgroup.procs` of the unit that `pid` runs in: its line of /proc/PID/cgroup in the
    /// hierarchy systemd keeps units in (the v1 `name=systemd` one on a hybrid host, else the
    /// v2 one), under that hierarchy's mount point.
    static func cgroupProcsFile(pid: pid_t, unit: String, procRoot: String = "/proc") -> String? {
        guard let membership = try? FileIO.readText(path: "\(procRoot)/\(pid)/cgroup"),
            let mounts = try? FileIO.readText(path: "\(procRoot)/self/mountinfo")
        else { return nil }
        return cgroupProcsFile(membership: membership, mountinfo: mounts, unit: unit)
    }

    static func cgroupProcsFile(membership: String, mountinfo: String, unit: String) -> String? {
        var unified: String?
        var named: String?
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasSuffix("/" + unit) else { continue }
            if fields[0] == "0", fields[1].isEmpty { unified = String(fields[2]) }
            if fields[1] == "name=systemd" { named = String(fields[2]) }
        }
        var unifiedMount: String?
        var namedMount: String?
        for line in mountinfo.split(separator: "\n") {
            // "36 25 0:31 / /sys/fs/cgroup/systemd rw,... shared:9 - cgroup cgroup rw,xattr,name=systemd"
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let before = halves[0].split(separator: " ")
            let after = halves[1].split(separator: " ")
            guard before.count >= 5, before[3] == "/", after.count >= 3 else { continue }
            let mountPoint = String(before[4])
            if after[0] == "cgroup2", unifiedMount == nil { unifiedMount = mountPoint }
            if after[0] == "cgroup", after[2].split(separator: ",").contains("name=systemd") { namedMount = mountPoint }
        }
        if let named, let namedMount { return namedMount + named + "/cgroup.procs" }
        if let unified, let unifiedMount { return unifiedMount + unified + "/cgroup.procs" }
        return nil
    }

    /// Stops every service of the slice (they go, `--collect`, once stopped).
    func stop() {
        _ = try? runToEnd(systemctl, ["stop", slice], timeout: .seconds(120))
    }
}

extension String {
    /// A decimal number padded with zeros to `width` digits (no Foundation).
    static func zeroPadded(_ value: Int, width: Int) -> String {
        let digits = "\(value)"
        return String(repeating: "0", count: Swift.max(0, width - digits.count)) + digits
    }
}
