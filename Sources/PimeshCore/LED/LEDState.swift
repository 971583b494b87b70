/// What an LED can be asked to show.
public enum LEDRole: String, CaseIterable, Sendable, Codable {
    /// A steady pulse while the lead runs: the one sign of life that needs nothing else to work.
    case liveness
    /// The degradation level, by blink speed.
    case level
    /// The most severe open condition, as a blink code.
    case alert
}

/// The highest severity among the open incidents (docs/incidents.md), as a blink code: N short
/// blinks for SEVN, a long pause. Fewer blinks are more severe. Every condition the LED once
/// showed on its own (a quarantine, a strained node, a failed agent, silent or conflicting
/// agents, a missed KPI) is an incident trigger now, so one table says what the LED means.
public enum LEDAlert: Int, CaseIterable, Sendable, Codable, Comparable {
    case sev1 = 1
    case sev2 = 2
    case sev3 = 3
    case sev4 = 4

    public init(_ severity: Severity) {
        self = LEDAlert(rawValue: severity.rawValue)!
    }

    public var blinks: Int { rawValue }

    public var name: String { "SEV\(rawValue)" }

    public static func < (lhs: LEDAlert, rhs: LEDAlert) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

/// The lead's state as the LEDs show it.
public struct LEDStatus: Sendable, Equatable {
    public var alive: Bool
    public var level: DegradationLevel
    public var alert: LEDAlert?

    public init(alive: Bool, level: DegradationLevel = .full, alert: LEDAlert? = nil) {
        self.alive = alive
        self.level = level
        self.alert = alert
    }

    /// The most severe of the open conditions, or none.
    public static func mostSevere(_ open: [LEDAlert]) -> LEDAlert? {
        open.min()
    }
}

/// From the lead's state to each LED's pattern (docs/leds.md has the table and pictures).
public enum LEDPatterns {
    public static let pulse = LEDPattern.code(1, on: .milliseconds(100), gap: .zero, pause: .milliseconds(900))

    public static func pattern(for role: LEDRole, _ status: LEDStatus) -> LEDPattern {
        guard status.alive else { return .off }
        switch role {
        case .liveness:
            return pulse
        case .level:
            return level(status.level)
        case .alert:
            return status.alert.map(alert) ?? .off
        }
    }

    /// Faster means worse: steady at FULL, 0.5 Hz at LIGHT … 5 Hz at EMERGENCY.
    public static func level(_ level: DegradationLevel) -> LEDPattern {
        switch level {
        case .full: .steady
        case .light: .blink(on: .seconds(1), off: .seconds(1))
        case .moderate: .blink(on: .milliseconds(500), off: .milliseconds(500))
        case .severe: .blink(on: .milliseconds(250), off: .milliseconds(250))
        case .emergency: .blink(on: .milliseconds(100), off: .milliseconds(100))
        }
    }

    /// N blinks of 200 ms, 300 ms apart, then 1.5 s dark: countable from across a room.
    public static func alert(_ alert: LEDAlert) -> LEDPattern {
        .code(alert.blinks, on: .milliseconds(200), gap: .milliseconds(300), pause: .milliseconds(1500))
    }
}
