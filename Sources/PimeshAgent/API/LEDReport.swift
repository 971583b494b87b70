/// `GET /v1/leds` and `pimesh leds show --json`: the backend, what the LEDs show and why.
public struct LEDReport: Codable, Sendable {
    /// `sysfs`, `gpiod`, `sim`, or `off`.
    public var backend: String
    /// How the backend was chosen, or why the LEDs are not driven.
    public var note: String
    public var alive: Bool
    public var level: String
    public var alert: String?
    public var alertBlinks: Int?
    public var leds: [LED]

    public struct LED: Codable, Sendable {
        public var name: String
        public var role: String
        public var on: Bool
        public var pattern: String
        public var periodMs: Int
        /// The lit parts of each period: `[start_ms, length_ms]` pairs.
        public var litMs: [[Int]]

        public init(name: String, role: String, on: Bool, pattern: String, periodMs: Int, litMs: [[Int]]) {
            self.name = name
            self.role = role
            self.on = on
            self.pattern = pattern
            self.periodMs = periodMs
            self.litMs = litMs
        }
    }

    public init(backend: String, note: String, alive: Bool, level: String, alert: String?, alertBlinks: Int?, leds: [LED]) {
        self.backend = backend
        self.note = note
        self.alive = alive
        self.level = level
        self.alert = alert
        self.alertBlinks = alertBlinks
        self.leds = leds
    }
}
