import Glibc
import PimeshCore
import PimeshLED

/// Turns the `leds` section of the config into a backend and the role of each LED.
public enum LEDConfiguration {
    public static let backends = ["auto", "sysfs", "gpiod", "sim", "off"]

    public struct Built: Sendable {
        public var backend: any LEDBackend
        public var assignments: [LEDDriver.Assignment]
        /// How the backend was chosen, for the log and `pimesh leds show`.
        public var note: String
    }

    /// Onboard LEDs by default: ACT (green) pulses, PWR (red) shows blink codes.
    static let defaultSysfs: [LeadConfig.LEDMapping] = [
        .init(name: "ACT|led0", role: LEDRole.liveness.rawValue), .init(name: "PWR|led1", role: LEDRole.alert.rawValue),
    ]
    static let defaultSim: [LeadConfig.LEDMapping] = LEDRole.allCases.map { .init(name: $0.rawValue, role: $0.rawValue) }

    public static func sysfsRoot(_ config: LeadConfig) -> String {
        config.leds.sysfsRoot ?? config.node.sysRoot + "/class/leds"
    }

    /// nil when the LEDs are off.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    public static func build(_ config: LeadConfig, backendOverride: String? = nil, now: @escaping @Sendable () -> Instant) throws -> Built? {
        let root = sysfsRoot(config)
        var backend = backendOverride ?? config.leds.backend
        var note = "leds.backend \(backend)"
        if backend == "auto" {
            let names = (config.leds.map.isEmpty ? defaultSysfs : config.leds.map).map(\.name)
            if let reason = unwritable(root: root, names: names) {
                backend = "sim"
                note = "auto: \(reason); using the simulated LEDs"
            } else {
                backend = "sysfs"
                note = "auto: onboard LEDs under \(root) are writable; using them"
            }
        }
        switch backend {
        case "off":
            return nil
        case "sysfs":
            let map = config.leds.map.isEmpty ? defaultSysfs : config.leds.map
            let sysfs = try SysfsLEDBackend(root: root, names: map.map { $0.name.split(separator: "|").map(String.init) })
            return Built(backend: sysfs, assignments: assignments(map), note: note)
        case "gpiod":
            let lines = config.leds.map.compactMap { entry in
                entry.chip.flatMap { chip in entry.line.map { GPIODLEDBackend.Line(chip: chip, offset: $0, activeLow: entry.activeLow) } }
            }
            return Built(backend: try GPIODLEDBackend(lines: lines), assignments: assignments(config.leds.map), note: note)
        default:
            let map = config.leds.map.isEmpty ? defaultSim : config.leds.map
            return Built(backend: SimulatedLEDBackend(leds: map.count, now: now), assignments: assignments(map), note: note)
        }
    }

    static func assignments(_ map: [LeadConfig.LEDMapping]) -> [LEDDriver.Assignment] {
        map.map { LEDDriver.Assignment(name: $0.name, role: LEDRole(rawValue: $0.role) ?? .liveness) }
    }

    /// Why the onboard LEDs cannot be driven, or nil when they can.
    static func unwritable(root: String, names: [String]) -> String? {
        for name in names {
            let alternatives = name.split(separator: "|").map(String.init)
            guard let found = alternatives.first(where: { access(root + "/" + $0 + "/brightness", F_OK) == 0 }) else {
                return "no onboard LED \(alternatives.joined(separator: " or ")) under \(root)"
            }
            for file in ["trigger", "brightness"] where access(root + "/" + found + "/" + file, W_OK) != 0 {
                return "\(root)/\(found)/\(file) is not writable (\(String(cString: strerror(errno))))"
            }
        }
        return nil
    }
}
