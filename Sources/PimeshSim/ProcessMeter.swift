import Glibc
import PimeshAgent
import PimeshRuntime
import PimeshSystem

/// What a benchmark reads about one process from /proc: memory (smaps_rollup), CPU time
/// (stat: utime + stime) and bytes it caused to be written to storage (io: write_bytes).
struct ProcessMeter {
    let pid: pid_t
    let procRoot: String

    init(pid: pid_t, procRoot: String = "/proc") {
        self.pid = pid
        self.procRoot = procRoot
    }

    struct Reading {
        var memory: ProcessMemory
        var cpuSeconds: Double
        /// nil where /proc/PID/io cannot be read (a kernel without task I/O accounting).
        var writeBytes: UInt64?
        var monotonicSeconds: Double
    }

    /// nil when the process is gone (or its stat cannot be parsed): a window never mixes a
    /// reading with a missing one.
    func read() -> Reading? {
        guard let memory = ProcessMemory.read(procRoot: procRoot, pid: String(pid)),
            let stat = try? FileIO.readText(path: "\(procRoot)/\(pid)/stat"), let cpuSeconds = Self.cpuSeconds(stat: stat)
        else { return nil }
        return Reading(
            memory: memory, cpuSeconds: cpuSeconds,
            writeBytes: (try? FileIO.readText(path: "\(procRoot)/\(pid)/io")).flatMap(Self.writeBytes(io:)),
            monotonicSeconds: Double(Clock.monotonicNow().nanoseconds) / 1e9)
    }

    /// Field 4 of /proc/PID/stat, counted from the last ')' like the others.
    static func parentPID(stat: String) -> pid_t? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? pid_t(fields[1]) : nil
    }

    /// utime + stime. The command name (field 2) may hold spaces and parentheses, so fields are
    /// counted from the last ')'.
    static func cpuSeconds(stat: String, ticksPerSecond: Int = sysconf(Int32(_SC_CLK_TCK))) -> Double? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3); utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]), ticksPerSecond > 0 else {
            return nil
        }
        return Double(user + system) / Double(ticksPerSecond)
    }

    static func writeBytes(io: String) -> UInt64? {
        for line in io.split(separator: "\n") where line.hasPrefix("write_bytes:") {
            return UInt64(line.dropFirst("write_bytes:".count).trimmingPrefix(" "))
        }
        return nil
    }
}

/// A process's figures over a window: memory at its end and at its peak, CPU as a share of one
/// core, storage writes as a rate.
public struct ProcessFigures: Codable, Sendable, Equatable {
    public var rssBytes: UInt64
    public var pssBytes: UInt64
    public var pssMaxBytes: UInt64
    public var privateBytes: UInt64
    public var privateMaxBytes: UInt64
    public var cpuPercentOfCore: Double
    public var storageWriteBytesPerHour: UInt64

    public init(
        rssBytes: UInt64, pssBytes: UInt64, pssMaxBytes: UInt64, privateBytes: UInt64, privateMaxBytes: UInt64,
        cpuPercentOfCore: Double, storageWriteBytesPerHour: UInt64
    ) {
        self.rssBytes = rssBytes
        self.pssBytes = pssBytes
        self.pssMaxBytes = pssMaxBytes
        self.privateBytes = privateBytes
        self.privateMaxBytes = privateMaxBytes
        self.cpuPercentOfCore = cpuPercentOfCore
        self.storageWriteBytesPerHour = storageWriteBytesPerHour
    }

    /// Samples taken once a second across a window; the first and last bound the rates.
    init?(samples: [ProcessMeter.Reading]) {
        guard let first = samples.first, let last = samples.last, samples.count >= 2 else { return nil }
        let seconds = max(0.001, last.monotonicSeconds - first.monotonicSeconds)
        rssBytes = last.memory.rssBytes
        pssBytes = last.memory.pssBytes
        pssMaxBytes = samples.map(\.memory.pssBytes).max() ?? 0
        privateBytes = last.memory.anonymousBytes
        privateMaxBytes = samples.map(\.memory.anonymousBytes).max() ?? 0
        cpuPercentOfCore = ImpedanceView.round(100 * max(0, last.cpuSeconds - first.cpuSeconds) / seconds)
        if let end = last.writeBytes, let start = first.writeBytes, end >= start {
            storageWriteBytesPerHour = UInt64((Double(end - start) / seconds * 3600).rounded())
        } else {
            storageWriteBytesPerHour = 0
        }
    }
}
