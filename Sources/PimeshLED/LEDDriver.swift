import Logging
import PimeshCore
import ServiceLifecycle
import Synchronization

/// Drives the LEDs from the lead's state, off the hot path: it reads the state once a second,
/// and otherwise sleeps until the next change of any LED's pattern. When the lead stops
/// (SIGTERM included) the LEDs are put back as they were.
public final class LEDDriver: Service {
    public struct Assignment: Sendable, Equatable {
        public var name: String
        public var role: LEDRole

        public init(name: String, role: LEDRole) {
            self.name = name
            self.role = role
        }
    }

    /// What `GET /v1/leds` shows.
    public struct Snapshot: Sendable {
        public var backend: String
        public var status: LEDStatus
        public var leds: [(assignment: Assignment, pattern: LEDPattern, on: Bool)]
    }

    public let backend: any LEDBackend
    public let assignments: [Assignment]
    private let status: @Sendable () -> LEDStatus
    private let now: @Sendable () -> Instant
    private let refresh: Duration
    private let logger: Logger
    private let shown: Mutex<(status: LEDStatus, lit: [Bool])>

    public init(
        backend: any LEDBackend, assignments: [Assignment], refresh: Duration = .seconds(1), logger: Logger,
        now: @escaping @Sendable () -> Instant, status: @escaping @Sendable () -> LEDStatus
    ) {
        self.backend = backend
        self.assignments = assignments
        self.refresh = refresh
        self.logger = logger
        self.now = now
        self.status = status
        shown = Mutex((LEDStatus(alive: false), Array(repeating: false, count: assignments.count)))
    }

    public var snapshot: Snapshot {
        let (status, lit) = shown.withLock { ($0.status, $0.lit) }
        return Snapshot(
            backend: backend.name, status: status,
            leds: assignments.enumerated().map { ($1, LEDPatterns.pattern(for: $1.role, status), lit[$0]) })
    }

    public func run() async throws {
        defer { restore() }
        try? await cancelWhenGracefulShutdown {
            try await self.drive()
        }
    }

    /// Each LED's pattern starts over when it changes, so a new blink code begins with its first blink.
    func drive() async throws {
        var current = status()
        var patterns = assignments.map { LEDPatterns.pattern(for: $0.role, current) }
        var since = Array(repeating: now(), count: assignments.count)
        var lit: [Bool?] = Array(repeating: nil, count: assignments.count)
        var nextRefresh = now() + refresh
        var failing = false
        while !Task.isCancelled {
            let instant = now()
            if instant >= nextRefresh {
                current = status()
                for index in assignments.indices {
                    let pattern = LEDPatterns.pattern(for: assignments[index].role, current)
                    if pattern != patterns[index] {
                        patterns[index] = pattern
                        since[index] = instant
                    }
                }
                nextRefresh = instant + refresh
            }
            var wake = nextRefresh
            for index in assignments.indices {
                let elapsed = instant - since[index]
                let on = patterns[index].isOn(at: elapsed)
                if lit[index] != on {
                    do {
                        try backend.set(index, on: on)
                        lit[index] = on
                        if failing {
                            failing = false
                            logger.notice("LEDs work again", metadata: ["backend": "\(backend.name)"])
                        }
                    } catch {
                        // Logged once, not at every blink: the lead goes on without its LEDs.
                        if !failing { logger.error("cannot set LED", metadata: ["led": "\(assignments[index].name)", "error": "\(error)"]) }
                        failing = true
                    }
                }
                if let change = patterns[index].nextChange(after: elapsed) {
                    wake = min(wake, since[index] + change)
                }
            }
            let snapshotStatus = current
            let snapshotLit = lit.map { $0 ?? false }
            shown.withLock { $0 = (snapshotStatus, snapshotLit) }
            let delay = wake - now()
            if delay > .zero { try await Task.sleep(for: delay) }
        }
    }

    private func restore() {
        do {
            try backend.restore()
        } catch {
            logger.error("cannot restore the LEDs", metadata: ["error": "\(error)"])
        }
        shown.withLock { $0 = (LEDStatus(alive: false), Array(repeating: false, count: assignments.count)) }
    }
}
