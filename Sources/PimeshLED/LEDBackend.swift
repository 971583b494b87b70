/// Where LED states go: the onboard LEDs (sysfs), header pins (libgpiod), or a recording (sim).
/// LEDs are numbered in the order the config lists them.
public protocol LEDBackend: Sendable {
    /// A name for logs and `pimesh leds show`.
    var name: String { get }
    func set(_ led: Int, on: Bool) throws
    /// Puts every LED back as it was before the backend took it.
    func restore() throws
}

public struct LEDError: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
