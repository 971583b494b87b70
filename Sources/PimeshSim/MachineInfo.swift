import Glibc
import PimeshAgent
import PimeshSystem

/// The machine a benchmark ran on, written into every report: figures from a Pi 4B and from a
/// 2-core VM are different figures.
public struct MachineInfo: Codable, Sendable, Equatable {
    public var cpuModel: String
    public var cores: Int
    public var memoryBytes: UInt64
    public var kernel: String
    public var architecture: String
    /// The file system and device that hold the lead's data dir (its writes are what wear the SD card).
    public var storage: String

    public static func current(storageFor path: String, procRoot: String = "/proc", sysRoot: String = "/sys") -> MachineInfo {
        var names = utsname()
        uname(&names)
        func field<T>(_ value: inout T) -> String {
            withUnsafePointer(to: &value) { $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout<T>.size) { String(cString: $0) } }
        }
        let cpuinfo = (try? FileIO.readText(path: "\(procRoot)/cpuinfo")) ?? ""
        let meminfo = (try? FileIO.readText(path: "\(procRoot)/meminfo")) ?? ""
        let mountinfo = (try? FileIO.readText(path: "\(procRoot)/self/mountinfo")) ?? ""
        return MachineInfo(
            cpuModel: cpuModel(cpuinfo: cpuinfo) ?? field(&names.machine), cores: sysconf(Int32(_SC_NPROCESSORS_ONLN)),
            memoryBytes: memTotal(meminfo: meminfo) ?? 0, kernel: field(&names.sysname) + " " + field(&names.release),
            architecture: field(&names.machine),
            storage: storage(path: path, mountinfo: mountinfo, sysRoot: sysRoot))
    }

    /// x86 names the CPU in "model name"; a Pi's kernel gives "Model" (the board) and no model name.
    static func cpuModel(cpuinfo: String) -> String? {
        var board: String?
        for line in cpuinfo.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingSpaces, value = parts[1].trimmingSpaces
            if key == "model name", !value.isEmpty { return value }
            if key == "Model", !value.isEmpty { board = value }
        }
        return board
    }

    static func memTotal(meminfo: String) -> UInt64? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let parts = line.split(separator: " ")
            if parts.count >= 2, let kilobytes = UInt64(parts[1]) { return kilobytes * 1024 }
        }
        return nil
    }

    /// "ext4 on /dev/mmcblk0p2 (SC32G)": the mount that holds `path` (the longest mount point
    /// that prefixes it) and, for a block device, its model or an SD card's name from sysfs.
    static func storage(path: String, mountinfo: String, sysRoot: String) -> String {
        var best: (point: String, type: String, source: String)?
        for line in mountinfo.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 2 else { continue }
            let point = String(left[4])
            let covers = point == "/" || path == point || path.hasPrefix(point + "/")
            if covers, point.count >= (best?.point.count ?? -1) { best = (point, String(right[0]), String(right[1])) }
        }
        guard let best else { return "unknown" }
        var text = "\(best.type) on \(best.source)"
        if best.source.hasPrefix("/dev/"), let device = blockDeviceName(String(best.source.dropFirst(5)), sysRoot: sysRoot) {
            text += " (\(device))"
        }
        return text
    }

    private static func blockDeviceName(_ name: String, sysRoot: String) -> String? {
        // A partition's sysfs entry has no device/ of its own; its disk is the directory above.
        for disk in [name, String(name.reversed().drop { $0.isNumber }.reversed()).replacingSuffix("p", with: "")] {
            for attribute in ["model", "name"] {
                if let text = try? FileIO.readText(path: "\(sysRoot)/class/block/\(disk)/device/\(attribute)"),
                    !text.trimmingSpaces.isEmpty
                {
                    return text.trimmingSpaces
                }
            }
        }
        return nil
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\n" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\n" }.reversed())
    }
}

extension String {
    /// mmcblk0p → mmcblk0, nvme0n1p → nvme0n1; sda stays sda.
    fileprivate func replacingSuffix(_ suffix: Character, with replacement: String) -> String {
        guard last == suffix, dropLast().last?.isNumber == true else { return self }
        return String(dropLast()) + replacement
    }
}
