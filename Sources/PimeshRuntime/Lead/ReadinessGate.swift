import Logging
import PimeshAgent
import PimeshCore
import Synchronization

/// Collects the bound addresses of the listeners; once all are up it publishes lead.json,
/// flips /readyz and tells systemd READY=1.
public actor ReadinessGate {
    private var apiPort: Int?
    private var apiUnixReady: Bool
    private var heartbeatPort: Int?
    private let onReady: @Sendable (_ apiPort: Int, _ heartbeatPort: Int) async -> Void
    private let readyFlag: ReadyFlag

    init(expectUnixAPI: Bool, readyFlag: ReadyFlag, onReady: @escaping @Sendable (Int, Int) async -> Void) {
        self.apiUnixReady = !expectUnixAPI
        self.readyFlag = readyFlag
        self.onReady = onReady
    }

    func apiBound(port: Int) async {
        apiPort = port
        await fireIfComplete()
    }

    func apiUnixBound() async {
        apiUnixReady = true
        await fireIfComplete()
    }

    func heartbeatBound(port: Int) async {
        heartbeatPort = port
        await fireIfComplete()
    }

    private func fireIfComplete() async {
        guard let apiPort, let heartbeatPort, apiUnixReady, !readyFlag.isReady else { return }
        await onReady(apiPort, heartbeatPort)
        readyFlag.set()
    }
}

public final class ReadyFlag: Sendable {
    private let value = Mutex(false)

    public init() {}

    func set() {
        value.withLock { $0 = true }
    }

    public var isReady: Bool {
        value.withLock { $0 }
    }
}
