import Glibc
import PimeshSystem

/// Onboard LEDs under `/sys/class/leds/<name>`: remembers each LED's trigger and brightness,
/// sets the trigger to `none`, drives `brightness` (0 or `max_brightness`), and puts both back
/// on `restore`.
public final class SysfsLEDBackend: LEDBackend {
    struct Saved: Sendable {
        var directory: String
        var trigger: String
        var brightness: String
        var maxBrightness: String
    }

    public let name = "sysfs"
    private let leds: [Saved]

    /// Names differ by kernel: `ACT`/`PWR` on recent Pi OS, `led0`/`led1` on older ones.
    public static let onboardCandidates = [["ACT", "led0"], ["PWR", "led1"]]

    /// Takes the LEDs named (each the first existing of its alternatives) under `root`.
    public init(root: String, names: [[String]]) throws {
        var saved: [Saved] = []
        for alternatives in names {
            guard let found = alternatives.first(where: { FileIO.exists(root + "/" + $0 + "/brightness") }) else {
                throw LEDError("no LED named \(alternatives.joined(separator: " or ")) under \(root)")
            }
            let directory = root + "/" + found
            let trigger = try Self.currentTrigger(try Self.read(directory + "/trigger"))
            saved.append(
                Saved(
                    directory: directory, trigger: trigger, brightness: try Self.read(directory + "/brightness"),
                    maxBrightness: (try? Self.read(directory + "/max_brightness")) ?? "1"))
        }
        leds = saved
        // Taken only once every LED was found, so a failure leaves them all as they were.
        for led in leds {
            try Self.write(led.directory + "/trigger", "none")
        }
    }

    /// The kernel lists every trigger and marks the active one: `none [mmc0] timer heartbeat`.
    public static func currentTrigger(_ listing: String) throws -> String {
        for word in listing.split(separator: " ") where word.hasPrefix("[") && word.hasSuffix("]") {
            return String(word.dropFirst().dropLast())
        }
        let single = listing.trimmingWhitespace()
        guard !single.isEmpty else { throw LEDError("empty trigger file") }
        return single
    }

    public func set(_ led: Int, on: Bool) throws {
        guard leds.indices.contains(led) else { throw LEDError("no LED \(led)") }
        try Self.write(leds[led].directory + "/brightness", on ? leds[led].maxBrightness : "0")
    }

    public func restore() throws {
        var failures: [String] = []
        for led in leds {
            do {
                try Self.write(led.directory + "/trigger", led.trigger)
                // A trigger such as `heartbeat` drives brightness itself; `none` needs it back.
                if led.trigger == "none" { try Self.write(led.directory + "/brightness", led.brightness) }
            } catch {
                failures.append("\(led.directory): \(error)")
            }
        }
        if !failures.isEmpty { throw LEDError("could not restore \(failures.joined(separator: "; "))") }
    }

    static func read(_ path: String) throws -> String {
        String(decoding: try FileIO.read(path: path, limit: 64 * 1024), as: UTF8.self).trimmingWhitespace()
    }

    static func write(_ path: String, _ value: String) throws {
        // O_TRUNC is ignored by sysfs and keeps a fake tree of plain files honest in tests.
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw LEDError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw LEDError("cannot write \"\(value)\" to \(path): \(String(cString: strerror(errno)))")
        }
    }
}
