import PimeshAgent
import ServiceLifecycle

/// sd_notify without libsystemd: `READY=1` once the lead serves, `WATCHDOG=1` at half of
/// `WATCHDOG_USEC`, `STOPPING=1` on the way out. Does nothing when `NOTIFY_SOCKET` is unset.
public struct SystemdNotifier: Sendable {
    public let socketPath: String?
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        if let usec = environment["WATCHDOG_USEC"].flatMap({ Int64($0) }), usec > 0 {
            watchdogInterval = .microseconds(usec / 2)
        } else {
            watchdogInterval = nil
        }
    }

    @discardableResult
    public func notify(_ message: String) -> Bool {
        guard let socketPath, let sender = try? DatagramSender(destination: .unix(path: socketPath)) else { return false }
        return (try? sender.send(Array(message.utf8))) != nil
    }
}

/// Pets the systemd watchdog while the lead runs.
struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let interval: Duration

    func run() async throws {
        notifier.notify("WATCHDOG=1")
        await repeatUntilGracefulShutdown(every: interval) { notifier.notify("WATCHDOG=1") }
    }
}
