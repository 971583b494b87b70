import FoundationEssentials
import PimeshCore

/// A Swift agent's whole client side: register once (or reuse saved credentials), then
/// heartbeat every interval until cancelled.
public struct PimeshAgent: Sendable {
    public let credentials: AgentCredentials

    public init(credentials: AgentCredentials) {
        self.credentials = credentials
    }

    /// Loads credentials from `identityFile` when it exists; otherwise registers with the lead
    /// found through `dataDir` and saves them there (0600) for the next start.
    public static func registerOrResume(
        dataDir: String, identityFile: String, registration: LeadClient.Registration
    ) throws -> PimeshAgent {
        if FileIO.exists(identityFile) {
            let bytes = try FileIO.read(path: identityFile)
            return PimeshAgent(credentials: try APICoding.decode(AgentCredentials.self, from: bytes))
        }
        let credentials = try LeadClient(dataDir: dataDir).register(registration)
        try FileIO.writeAtomically(path: identityFile, bytes: try APICoding.encode(credentials), mode: 0o600)
        return PimeshAgent(credentials: credentials)
    }

    /// What the agent reports in each heartbeat.
    public struct Report: Sendable {
        public var state: TrinaryState
        public var queueDepth: Int
        public var progress: UInt64

        public init(state: TrinaryState = .ready, queueDepth: Int = 0, progress: UInt64 = 0) {
            self.state = state
            self.queueDepth = queueDepth
            self.progress = progress
        }
    }

    /// Heartbeats at the interval the lead asked for until the task is cancelled.
    /// A failed send is retried at the next tick: the lead may be restarting.
    public func heartbeat(report: @Sendable () -> Report) async throws {
        let sender = try HeartbeatSender(credentials: credentials)
        let interval = Duration.milliseconds(max(10, credentials.heartbeat.intervalMs))
        while !Task.isCancelled {
            let current = report()
            _ = try? sender.send(state: current.state, queueDepth: current.queueDepth, progress: current.progress)
            try await Task.sleep(for: interval)
        }
    }
}
