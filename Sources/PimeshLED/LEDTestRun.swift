import PimeshCore

/// `pimesh leds test`: every pattern once, on every configured LED at the same time, so an
/// operator standing at the Pi can check each LED and each pattern by eye.
public struct LEDTestRun: Sendable {
    public struct Step: Sendable {
        public var label: String
        public var pattern: LEDPattern
        public var duration: Duration
    }

    /// The liveness pulse, every level, every blink code: each for one period, at least 2 s.
    public static var steps: [Step] {
        var steps: [Step] = []
        func add(_ label: String, _ pattern: LEDPattern) {
            steps.append(Step(label: label, pattern: pattern, duration: max(pattern.period, .seconds(2))))
        }
        add("liveness pulse", LEDPatterns.pulse)
        for level in DegradationLevel.allCases { add("level \(level.rawValue)", LEDPatterns.level(level)) }
        for alert in LEDAlert.allCases { add("alert \(alert.blinks): \(alert.name)", LEDPatterns.alert(alert)) }
        add("off", .off)
        return steps
    }

    public let backend: any LEDBackend
    public let leds: Int
    public let now: @Sendable () -> Instant

    public init(backend: any LEDBackend, leds: Int, now: @escaping @Sendable () -> Instant) {
        self.backend = backend
        self.leds = leds
        self.now = now
    }

    /// Runs the steps; `announce` is told each one as it starts. The caller restores the LEDs.
    public func run(announce: (Step) -> Void) async throws {
        for step in Self.steps {
            announce(step)
            let start = now()
            var lit: [Bool?] = Array(repeating: nil, count: leds)
            while true {
                let elapsed = now() - start
                if elapsed >= step.duration { break }
                let on = step.pattern.isOn(at: elapsed)
                for led in 0..<leds where lit[led] != on {
                    try backend.set(led, on: on)
                    lit[led] = on
                }
                let next = min(step.pattern.nextChange(after: elapsed) ?? step.duration, step.duration)
                try await Task.sleep(for: next - elapsed)
            }
        }
    }
}
