import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem

/// Reads the Pi's own condition from /proc and /sys. The roots are settings so that tests
/// can point them at a fake tree; a file that is missing gives a nil reading, never an error.
public struct NodeProbe: Sendable {
    public var procRoot: String
    public var sysRoot: String

    public init(procRoot: String = "/proc", sysRoot: String = "/sys") {
        self.procRoot = procRoot
        self.sysRoot = sysRoot
    }

    public func read() -> NodeReadings {
        let memory = meminfo()
        var readings = NodeReadings(
            cpuCount: cpuCount(),
            loadAverage: text("\(procRoot)/loadavg").flatMap { $0.split(separator: " ").first }.flatMap { Double($0) },
            cpuPressure: pressure("cpu"),
            memoryPressure: pressure("memory"),
            ioPressure: pressure("io"),
            memoryTotalBytes: memory["MemTotal"],
            memoryAvailableBytes: memory["MemAvailable"],
            temperatureCelsius: hottestThermalZone())
        if let bits = throttledBits() {
            readings.setPower(throttledBits: bits)
        } else if let alarm = underVoltageAlarm() {
            readings.underVoltage = alarm
        }
        readings.leadWrittenBytes = ownWrittenBytes()
        return readings
    }

    /// The firmware's `get_throttled` word (Pi OS kernels: a sysfs file of the firmware
    /// driver, in hex): bit 0 under-voltage, 1 frequency capped, 2 throttled, 16 under-voltage
    /// since boot.
    func throttledBits() -> UInt32? {
        guard let raw = text("\(sysRoot)/devices/platform/soc/soc:firmware/get_throttled")?.trimmingWhitespace() else { return nil }
        return UInt32(raw.hasPrefix("0x") ? String(raw.dropFirst(2)) : raw, radix: 16)
    }

    /// `raspberrypi-hwmon` (hwmon named `rpi_volt`): `in0_lcrit_alarm` is 1 while the supply is low.
    func underVoltageAlarm() -> Bool? {
        let directory = "\(sysRoot)/class/hwmon"
        guard let names = try? FileIO.list(directory) else { return nil }
        for name in names.sorted() where text("\(directory)/\(name)/name")?.trimmingWhitespace() == "rpi_volt" {
            return text("\(directory)/\(name)/in0_lcrit_alarm").map { $0.trimmingWhitespace() == "1" }
        }
        return nil
    }

    /// `write_bytes` of `<proc>/self/io`: what this process caused to be written to storage.
    func ownWrittenBytes() -> UInt64? {
        guard let content = text("\(procRoot)/self/io") else { return nil }
        for line in content.split(separator: "\n") where line.hasPrefix("write_bytes:") {
            return UInt64(line.dropFirst("write_bytes:".count).trimmingWhitespace())
        }
        return nil
    }

    private func text(_ path: String) -> String? {
        try? FileIO.readText(path: path)
    }

    /// `<sys>/devices/system/cpu/online` lists ranges such as `0-3`; sysconf is the fallback.
    func cpuCount() -> Int {
        if let online = text("\(sysRoot)/devices/system/cpu/online") {
            var count = 0
            for range in online.trimmingWhitespace().split(separator: ",") {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                if bounds.count == 2, bounds[1] >= bounds[0] {
                    count += bounds[1] - bounds[0] + 1
                } else if bounds.count == 1 {
                    count += 1
                }
            }
            if count > 0 { return count }
        }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// `some avg10=1.23 avg60=… total=…`: the share of the last 10 s some task stalled, in percent.
    func pressure(_ resource: String) -> Double? {
        guard let content = text("\(procRoot)/pressure/\(resource)") else { return nil }
        for line in content.split(separator: "\n") where line.hasPrefix("some ") {
            for field in line.split(separator: " ") where field.hasPrefix("avg10=") {
                return Double(field.dropFirst(6))
            }
        }
        return nil
    }

    /// meminfo values in bytes, by key.
    func meminfo() -> [String: UInt64] {
        guard let content = text("\(procRoot)/meminfo") else { return [:] }
        var result: [String: UInt64] = [:]
        for line in content.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, parts[0].hasSuffix(":"), let value = UInt64(parts[1]) else { continue }
            let unit: UInt64 = parts.count >= 3 && parts[2] == "kB" ? 1024 : 1
            result[String(parts[0].dropLast())] = value * unit
        }
        return result
    }

    /// The hottest `thermal_zone*/temp` (millidegrees Celsius) under `<sys>/class/thermal`.
    func hottestThermalZone() -> Double? {
        let directory = "\(sysRoot)/class/thermal"
        guard let dir = opendir(directory) else { return nil }
        defer { closedir(dir) }
        var hottest: Double?
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasPrefix("thermal_zone"),
                let value = text("\(directory)/\(name)/temp").flatMap({ Double($0.trimmingWhitespace()) })
            else { continue }
            let celsius = value / 1000
            hottest = max(hottest ?? celsius, celsius)
        }
        return hottest
    }
}
