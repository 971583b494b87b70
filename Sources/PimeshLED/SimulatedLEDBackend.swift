import PimeshCore
import Synchronization

/// Records every transition with its time instead of lighting anything: for tests, for the
/// demo (`pimesh leds watch`), and for a Pi without LEDs to spare. Clearly a simulation.
public final class SimulatedLEDBackend: LEDBackend {
    public struct Transition: Sendable, Equatable {
        public var led: Int
        public var on: Bool
        public var at: Instant
    }

    public let name = "sim"
    private let now: @Sendable () -> Instant
    private let state: Mutex<(current: [Bool], transitions: [Transition])>
    /// The newest transitions are kept; a long-running lead does not grow.
    private let capacity: Int

    public init(leds: Int, capacity: Int = 10_000, now: @escaping @Sendable () -> Instant) {
        self.now = now
        self.capacity = capacity
        state = Mutex((Array(repeating: false, count: leds), []))
    }

    public func set(_ led: Int, on: Bool) throws {
        let at = now()
        try state.withLock { state in
            guard state.current.indices.contains(led) else { throw LEDError("no LED \(led)") }
            guard state.current[led] != on else { return }
            state.current[led] = on
            state.transitions.append(Transition(led: led, on: on, at: at))
            if state.transitions.count > capacity { state.transitions.removeFirst(state.transitions.count - capacity) }
        }
    }

    public func restore() throws {
        for led in current.indices where current[led] {
            try set(led, on: false)
        }
    }

    public var current: [Bool] {
        state.withLock { $0.current }
    }

    public var transitions: [Transition] {
        state.withLock { $0.transitions }
    }
}
