import CGPIOD
import Glibc
import PimeshAgent
import PimeshCore
import PimeshLED
import PimeshStore
import PimeshSystem

/// `pimesh selftest`: checks a real device in one go. Each check says PASS, FAIL or SKIP with
/// its reason; it never throws, so one broken part cannot hide the others.
public struct Selftest: Sendable {
    public enum Outcome: String, Codable, Sendable {
        case pass = "PASS"
        case fail = "FAIL"
        case skip = "SKIP"
    }

    public struct Result: Codable, Sendable {
        public var check: String
        public var result: Outcome
        public var detail: String
        public var ms: Double
    }

    public struct Report: Codable, Sendable {
        public var results: [Result]
        public var passed: Int
        public var failed: Int
        public var skipped: Int
    }

    public let config: LeadConfig
    /// Where `/dev/gpiochip*` are looked for; tests point it elsewhere.
    public let devRoot: String

    public init(config: LeadConfig, devRoot: String = "/dev") {
        self.config = config
        self.devRoot = devRoot
    }

    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    public func run() -> Report {
        let checks: [(String, () -> (Outcome, String))] = [
            ("leds.sysfs", ledsSysfs), ("leds.gpiod", ledsGPIOD), ("heartbeat.socket", heartbeatSocket),
            ("store.fsync", storeFsync), ("disk.free", diskFree), ("cgroup.v2", cgroupV2), ("thermal", thermal), ("power", power),
            ("clock", clock),
        ]
        var results: [Result] = []
        for (name, check) in checks {
            let start = Clock.monotonicNow()
            let (outcome, detail) = check()
            results.append(
                Result(check: name, result: outcome, detail: detail, ms: ImpedanceView.round((Clock.monotonicNow() - start).milliseconds)))
        }
        return Report(
            results: results, passed: results.filter { $0.result == .pass }.count,
            failed: results.filter { $0.result == .fail }.count, skipped: results.filter { $0.result == .skip }.count)
    }

    /// Takes the onboard LEDs, lights and darkens each, and checks that trigger and brightness
    /// are back as they were.
    @_optimize(size)  // cold: a person's selftest (the 25 MB budget)
    func ledsSysfs() -> (Outcome, String) {
        let root = LEDConfiguration.sysfsRoot(config)
        let names = LEDConfiguration.defaultSysfs.map { $0.name.split(separator: "|").map(String.init) }
        guard FileIO.exists(root) else { return (.skip, "no \(root): this machine has no LED class devices") }
        let before = names.compactMap { alternatives in alternatives.first { FileIO.exists(root + "/" + $0) } }
        guard before.count == names.count else {
            return (.skip, "no onboard ACT/led0 and PWR/led1 under \(root)")
        }
        func triggers() -> [String] {
            before.map { (try? SysfsLEDBackend.currentTrigger(String(decoding: (try? FileIO.read(path: root + "/" + $0 + "/trigger")) ?? [], as: UTF8.self))) ?? "?" }
        }
        let original = triggers()
        do {
            let backend = try SysfsLEDBackend(root: root, names: names)
            for led in names.indices {
                try backend.set(led, on: true)
                try backend.set(led, on: false)
            }
            try backend.restore()
        } catch {
            return (.fail, "\(error) (the lead needs write access to \(root)/*/trigger and brightness: run it as root or add a udev rule)")
        }
        let after = triggers()
        guard after == original else { return (.fail, "triggers not restored: \(original) before, \(after) after") }
        return (.pass, "\(before.joined(separator: ", ")) written and restored (triggers \(original.joined(separator: ", ")))")
    }

    /// Opens the configured GPIO chips (gpiochip0 when none is configured) and requests the
    /// configured lines; unconfigured lines are never touched.
    @_optimize(size)  // cold: run by a person on a Pi (the 25 MB budget)
    func ledsGPIOD() -> (Outcome, String) {
        let mapped = config.leds.map.filter { $0.chip != nil && $0.line != nil }
        let chips = mapped.isEmpty ? ["gpiochip0"] : Array(Set(mapped.compactMap(\.chip))).sorted()
        let present = (try? FileIO.list(devRoot))?.filter { $0.hasPrefix("gpiochip") } ?? []
        if present.isEmpty {
            let reason = "no gpiochip: \(devRoot) has no gpiochip* (no GPIO on this machine)"
            return (config.leds.backend == "gpiod" ? .fail : .skip, reason)
        }
        var details: [String] = []
        for chip in chips {
            let path = chip.hasPrefix("/") ? chip : devRoot + "/" + chip
            guard let handle = gpiod_chip_open(path) else {
                return (.fail, "cannot open \(path): \(String(cString: strerror(errno)))")
            }
            details.append("\(chip): \(gpiod_chip_num_lines(handle)) lines")
            gpiod_chip_close(handle)
        }
        if !mapped.isEmpty {
            do {
                let backend = try GPIODLEDBackend(
                    lines: mapped.map { GPIODLEDBackend.Line(chip: $0.chip!, offset: $0.line!, activeLow: $0.activeLow) })
                for led in mapped.indices {
                    try backend.set(led, on: true)
                    try backend.set(led, on: false)
                }
                try backend.restore()
                details.append("lines \(mapped.map { "\($0.chip!):\($0.line!)" }.joined(separator: ", ")) requested, set and released")
            } catch {
                return (.fail, "\(error)")
            }
        }
        return (.pass, details.joined(separator: "; "))
    }

    /// A datagram to ourselves on loopback, as heartbeats travel.
    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func heartbeatSocket() -> (Outcome, String) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (.fail, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { return (.fail, "cannot bind 127.0.0.1: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let payload = (0..<HeartbeatDatagram.size).map { UInt8($0) }
        let start = Clock.monotonicNow()
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, pointer, length) }
            }
        }
        guard sent == payload.count else { return (.fail, "sendto: \(String(cString: strerror(errno)))") }
        var received = [UInt8](repeating: 0, count: 128)
        let count = received.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count == payload.count, Array(received.prefix(count)) == payload else {
            return (.fail, "no datagram came back within 1 s (\(count < 0 ? String(cString: strerror(errno)) : "\(count) bytes"))")
        }
        let micros = Int(((Clock.monotonicNow() - start).milliseconds * 1000).rounded())
        return (.pass, "\(HeartbeatDatagram.size)-byte datagram round trip on 127.0.0.1 in \(micros) µs")
    }

    /// 20 small commits with `synchronous=FULL` in the data dir: what accepting a task costs here.
    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func storeFsync() -> (Outcome, String) {
        let directory = config.dataDir
        do {
            try FileIO.makeDirectories(directory, mode: 0o700)
        } catch {
            return (.fail, "cannot create the data dir \(directory): \(error)")
        }
        let path = directory + "/selftest-\(getpid()).db"
        defer {
            for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
        }
        var times: [Double] = []
        do {
            let database = try Database(path: path, migrations: [])
            try database.execute("PRAGMA synchronous=FULL")
            try database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            for index in 0..<20 {
                let start = Clock.monotonicNow()
                try database.transaction { try $0.run("INSERT INTO t (id, v) VALUES (?, ?)", [.integer(Int64(index)), .blob(Array(repeating: 7, count: 512))]) }
                times.append((Clock.monotonicNow() - start).milliseconds)
            }
        } catch {
            return (.fail, "SQLite in \(directory): \(error)")
        }
        times.sort()
        let median = times[times.count / 2]
        let detail = "20 fsync'd commits in \(directory): median \(Self.ms(median)), worst \(Self.ms(times.last!))"
        // An SD card in good health commits in a few ms; hundreds mean it is failing or worn.
        return median > 200 ? (.fail, detail + " (over 200 ms: the card is too slow or failing)") : (.pass, detail)
    }

    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func diskFree() -> (Outcome, String) {
        var stats = statvfs()
        let directory = FileIO.exists(config.dataDir) ? config.dataDir : "."
        guard statvfs(directory, &stats) == 0 else { return (.fail, "statvfs \(directory): \(String(cString: strerror(errno)))") }
        let free = UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
        let total = UInt64(stats.f_blocks) * UInt64(stats.f_frsize)
        let detail = "\(free / 1_048_576) MiB free of \(total / 1_048_576) MiB under \(directory)"
        // The database, its WAL and the snapshot spool need room; below 100 MiB writes start to fail.
        return free < 100 * 1_048_576 ? (.fail, detail + " (under 100 MiB)") : (.pass, detail)
    }

    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func cgroupV2() -> (Outcome, String) {
        let mount = config.node.sysRoot + "/fs/cgroup"
        guard FileIO.exists(mount + "/cgroup.controllers") else {
            return (.skip, "no cgroup v2 at \(mount) (v1 or none): agents' memory is summed from /proc instead")
        }
        let ownText = (try? FileIO.readText(path: config.node.procRoot + "/self/cgroup")) ?? ""
        guard let line = ownText.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else {
            return (.skip, "cannot tell this process's cgroup from \(config.node.procRoot)/self/cgroup")
        }
        let own = String(line.dropFirst(3))
        let directory = mount + (own == "/" ? "" : own)
        let controllers = ((try? FileIO.readText(path: directory + "/cgroup.controllers")) ?? "").trimmingWhitespace()
        guard access(directory + "/cgroup.subtree_control", W_OK) == 0 else {
            return (.skip, "cgroup \(own) is not delegated (set Delegate=yes in the unit): freeze falls back to SIGSTOP")
        }
        return (.pass, "cgroup \(own) is delegated; controllers: \(controllers.isEmpty ? "none" : controllers)")
    }

    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func thermal() -> (Outcome, String) {
        let root = config.node.sysRoot + "/class/thermal"
        let zones = ((try? FileIO.list(root)) ?? []).filter { $0.hasPrefix("thermal_zone") }.sorted()
        for zone in zones {
            if let text = try? FileIO.readText(path: root + "/" + zone + "/temp"), let milli = Double(text.trimmingWhitespace()) {
                let celsius = milli / 1000
                let detail = "\(zone): \(Int(celsius.rounded())) °C"
                // A Pi 4B throttles at 80 °C (85 °C hard limit).
                return celsius >= 80 ? (.fail, detail + " (at or over 80 °C: the Pi throttles)") : (.pass, detail)
            }
        }
        return (.skip, "no readable thermal zone under \(root)")
    }

    /// Under-voltage and throttling from the firmware (`get_throttled`) or `raspberrypi-hwmon`,
    /// read the way the lead reads them.
    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func power() -> (Outcome, String) {
        let probe = NodeProbe(procRoot: config.node.procRoot, sysRoot: config.node.sysRoot)
        if let bits = probe.throttledBits() {
            let word = "get_throttled=0x" + String(bits, radix: 16)
            var power = NodeReadings(cpuCount: 1)
            power.setPower(throttledBits: bits)
            if power.underVoltage == true { return (.fail, word + ": under-voltage now; use a 5.1 V 3 A supply") }
            if power.throttled == true || power.frequencyCapped == true { return (.fail, word + ": the ARM is throttled or capped now") }
            if power.underVoltageSinceBoot == true { return (.fail, word + ": under-voltage happened since boot; check the supply and the SD card") }
            return (.pass, word + ": no under-voltage or throttling since boot")
        }
        if let low = probe.underVoltageAlarm() {
            return low ? (.fail, "rpi_volt in0_lcrit_alarm=1: under-voltage now") : (.pass, "rpi_volt in0_lcrit_alarm=0: supply ok")
        }
        return (.skip, "no get_throttled under \(config.node.sysRoot)/devices/platform/soc/soc:firmware and no rpi_volt hwmon: not a Raspberry Pi, or a kernel without them")
    }

    /// A Pi 4B has no real-time clock: before NTP it starts at an old date, which breaks
    /// heartbeat timestamps and snapshot times.
    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    func clock() -> (Outcome, String) {
        let wallMs = Clock.wallMilliseconds()
        let first = Clock.monotonicNow()
        let second = Clock.monotonicNow()
        guard second >= first else { return (.fail, "the monotonic clock went backwards") }
        // 2024-01-01T00:00:00Z
        guard wallMs >= 1_704_067_200_000 else {
            return (.fail, "the wall clock reads \(UTCTime.iso8601(epochMs: wallMs)), before 2024: not set yet (is NTP synced?)")
        }
        // A date after 2024 proves little: fake-hwclock restores the time saved at shutdown.
        // The kernel knows whether NTP has disciplined the clock (adjtimex, as the audit log's
        // clock_synced): until then, the first sync steps it by however long the Pi was off.
        guard let synchronized = SystemClockStatus().synchronized else {
            return (.fail, "the wall clock reads \(UTCTime.iso8601(epochMs: wallMs)); whether NTP synchronized it is unknown: adjtimex failed (\(String(cString: strerror(errno))))")
        }
        guard synchronized else {
            return (
                .fail,
                "the wall clock reads \(UTCTime.iso8601(epochMs: wallMs)) and is not synchronized (adjtimex): it will step when NTP "
                    + "syncs, and audit rows are marked ~ until then; check `timedatectl` and the network"
            )
        }
        return (.pass, "wall clock \(UTCTime.iso8601(epochMs: wallMs)), synchronized (adjtimex); monotonic clock advancing")
    }

    @_optimize(size)  // cold: `pimesh selftest`, a person on a Pi (the 25 MB budget)
    static func ms(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        return "\(hundredths / 100).\(String(repeating: "0", count: hundredths % 100 < 10 ? 1 : 0))\(hundredths % 100) ms"
    }
}
