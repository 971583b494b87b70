import CGPIOD
import Glibc

/// LEDs on header pins through libgpiod 1.6: one output line request per LED, released on
/// `restore` (the kernel then leaves the pin as it was before the request).
public final class GPIODLEDBackend: LEDBackend, @unchecked Sendable {
    public struct Line: Sendable, Equatable {
        /// `gpiochip0`, or a path such as `/dev/gpiochip0`.
        public var chip: String
        public var offset: Int
        /// The LED lights when the pin is low (wired from 3V3 through the LED to the pin).
        public var activeLow: Bool

        public init(chip: String, offset: Int, activeLow: Bool) {
            self.chip = chip
            self.offset = offset
            self.activeLow = activeLow
        }
    }

    public let name = "gpiod"
    // libgpiod handles; used only from the driver's task, and released once in `restore`.
    private var chips: [String: OpaquePointer] = [:]
    private var lines: [OpaquePointer] = []
    private var released = false

    public init(lines wanted: [Line], consumer: String = "pimesh") throws {
        do {
            for line in wanted {
                let chip = try chips[line.chip] ?? Self.open(line.chip)
                chips[line.chip] = chip
                let count = Int(gpiod_chip_num_lines(chip))
                guard line.offset >= 0 && line.offset < count else {
                    throw LEDError("\(line.chip) has lines 0…\(count - 1), not \(line.offset)")
                }
                guard let handle = gpiod_chip_get_line(chip, UInt32(line.offset)) else {
                    throw LEDError("cannot get line \(line.offset) of \(line.chip): \(String(cString: strerror(errno)))")
                }
                let flags = line.activeLow ? Int32(GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW) : 0
                guard gpiod_line_request_output_flags(handle, consumer, flags, 0) == 0 else {
                    throw LEDError(
                        "cannot request line \(line.offset) of \(line.chip) as an output: \(String(cString: strerror(errno)))"
                            + " (is another program using it?)")
                }
                lines.append(handle)
            }
        } catch {
            try? restore()
            throw error
        }
    }

    static func open(_ chip: String) throws -> OpaquePointer {
        let handle = chip.hasPrefix("/") ? gpiod_chip_open(chip) : gpiod_chip_open_by_name(chip)
        guard let handle else {
            throw LEDError("cannot open GPIO chip \(chip): \(String(cString: strerror(errno)))")
        }
        return handle
    }

    public func set(_ led: Int, on: Bool) throws {
        guard !released, lines.indices.contains(led) else { throw LEDError("no LED \(led)") }
        guard gpiod_line_set_value(lines[led], on ? 1 : 0) == 0 else {
            throw LEDError("cannot set GPIO line: \(String(cString: strerror(errno)))")
        }
    }

    public func restore() throws {
        guard !released else { return }
        released = true
        for line in lines {
            _ = gpiod_line_set_value(line, 0)
            gpiod_line_release(line)
        }
        for chip in chips.values { gpiod_chip_close(chip) }
        lines = []
        chips = [:]
    }
}
