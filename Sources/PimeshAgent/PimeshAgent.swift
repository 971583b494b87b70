import Glibc
import FoundationEssentials
import PimeshCore
import PimeshSystem
import Synchronization

/// A Swift agent's whole client side: register once (or reuse saved credentials), then
/// heartbeat every interval until cancelled.
public struct PimeshAgent: Sendable {
    public let credentials: AgentCredentials
    /// One socket for the agent's heartbeats and the work datagrams that answer them.
    private let link = Link()

    public init(credentials: AgentCredentials) {
        self.credentials = credentials
    }

    private final class Link: Sendable {
        private let sender = Mutex<HeartbeatSender?>(nil)

        func get(_ credentials: AgentCredentials) throws -> HeartbeatSender {
            try sender.withLock { sender in
                if let sender { return sender }
                let made = try HeartbeatSender(credentials: credentials)
                sender = made
                return made
            }
        }
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
        let sender = try link.get(credentials)
        let interval = Duration.milliseconds(max(10, credentials.heartbeat.intervalMs))
        while !Task.isCancelled {
            let current = report()
            _ = try? sender.send(state: current.state, queueDepth: current.queueDepth, progress: current.progress)
            try await Task.sleep(for: interval)
        }
    }

    /// What a handler does with one item: a task's outcome, or an ask/broadcast answer.
    public enum Reply: Sendable {
        case succeeded(result: String?)
        case failed(error: String)
        case conflict(ConflictReport, result: String?)
        /// For ask/broadcast: the agent's trinary state and its answer.
        case answer(TrinaryState, String?)
    }

    /// How work reaches the agent.
    public enum Transport: Sendable {
        /// Datagrams to the heartbeat socket (docs/protocol.md): no connection waits in the lead.
        case datagrams
        /// A long poll held open in the lead: for agents that cannot receive datagrams.
        case longPoll
    }

    /// Takes work and runs `handler` on each item, until `shouldStop` says so. Blocking: run it
    /// on a thread of its own, beside `heartbeat`. Connection errors (the lead restarting) are
    /// retried after a second.
    public func serve(
        dataDir: String?, waitMs: Int = 25_000, transport: Transport = .datagrams, shouldStop: @Sendable () -> Bool = { false },
        handler: (WorkItem) -> Reply
    ) {
        if transport == .datagrams, let sender = try? link.get(credentials) {
            serveDatagrams(sender: sender, dataDir: dataDir, shouldStop: shouldStop, handler: handler)
            return
        }
        while !shouldStop() {
            do {
                let client = try LeadClient.forAgent(credentials, dataDir: dataDir)
                for item in try client.pullWork(agentID: credentials.id, waitMs: waitMs) {
                    try deliver(handler(item), for: item, dataDir: dataDir, sender: nil)
                }
            } catch {
                sleep(seconds: 1)
            }
        }
    }

    private func serveDatagrams(
        sender: HeartbeatSender, dataDir: String?, shouldStop: @Sendable () -> Bool, handler: (WorkItem) -> Reply
    ) {
        sender.takeWorkDatagrams()
        let interval = Duration.milliseconds(max(10, credentials.heartbeat.intervalMs))
        // No periodic poll: the lead sends what waits in the inbox at each heartbeat of ours
        // (docs/protocol.md), so an HTTP request is made only for a fetch or a result.
        while !shouldStop() {
            sender.heartbeatIfQuiet(interval: interval)
            var items: [WorkItem] = []
            var fetch = false
            switch sender.receiveWork(timeoutMs: 250) {
            case .item(let item): items = [item]
            case .fetch: fetch = true
            case nil: continue
            }
            do {
                let client = try LeadClient.forAgent(credentials, dataDir: dataDir)
                if fetch {
                    items += try client.pullWork(agentID: credentials.id, waitMs: 0, max: 8)
                }
                for item in items {
                    try deliver(handler(item), for: item, dataDir: dataDir, sender: sender)
                }
            } catch {
                sleep(seconds: 1)
            }
        }
    }

    /// How long a result waits for a lead that is gone or restarting.
    public static let resultRetryFor: Duration = .seconds(120)

    /// Posts a reply; while the lead does not answer (or answers 502/503 as it starts, or 507
    /// while its disk is full), tries again with backoff from 200 ms to 5 s, each time at the
    /// lead's current address, and keeps heartbeating on `sender` meanwhile. The work is done: losing its result to a lead
    /// restart would have it done twice. An ask's answer is worth only its window: no retry.
    func deliver(_ reply: Reply, for item: WorkItem, dataDir: String?, sender: HeartbeatSender?) throws {
        let deadline = Clock.monotonicNow() + (item.kind == .task ? Self.resultRetryFor : .zero)
        var delay = Duration.milliseconds(200)
        let interval = Duration.milliseconds(max(10, credentials.heartbeat.intervalMs))
        while true {
            do {
                return try send(reply, for: item, client: try LeadClient.forAgent(credentials, dataDir: dataDir))
            } catch let error as LeadClient.APIError where ![502, 503, 507].contains(error.status) {
                throw error
            } catch {
                guard Clock.monotonicNow() + delay < deadline else { throw error }
            }
            let resume = Clock.monotonicNow() + delay
            while Clock.monotonicNow() < resume {
                sender?.heartbeatIfQuiet(interval: interval)
                var pause = timespec(tv_sec: 0, tv_nsec: 50_000_000)
                _ = nanosleep(&pause, nil)
            }
            delay = min(delay * 2, .seconds(5))
        }
    }

    public func send(_ reply: Reply, for item: WorkItem, client: LeadClient) throws {
        let id = credentials.id
        switch (item.kind, reply) {
        case (.task, .succeeded(let result)):
            try client.postResult(taskID: item.id, ResultReport(agentID: id, outcome: .succeeded, result: result))
        case (.task, .failed(let error)):
            try client.postResult(taskID: item.id, ResultReport(agentID: id, outcome: .failed, error: error))
        case (.task, .conflict(let conflict, let result)):
            try client.postResult(taskID: item.id, ResultReport(agentID: id, outcome: .conflict, result: result, conflict: conflict))
        case (.task, .answer(let state, let answer)):
            try client.postResult(
                taskID: item.id, ResultReport(agentID: id, outcome: state == .conflict ? .failed : .succeeded, result: answer))
        case (_, .answer(let state, let answer)):
            try client.postAnswer(operationID: item.id, AnswerReport(agentID: id, state: state, answer: answer))
        case (_, .succeeded(let answer)):
            try client.postAnswer(operationID: item.id, AnswerReport(agentID: id, state: .ready, answer: answer))
        case (_, .failed(let error)):
            try client.postAnswer(operationID: item.id, AnswerReport(agentID: id, state: .transit, answer: error))
        case (_, .conflict(let conflict, let answer)):
            try client.postAnswer(operationID: item.id, AnswerReport(agentID: id, state: .conflict, answer: answer, conflict: conflict))
        }
    }

    private func sleep(seconds: Int) {
        var request = timespec(tv_sec: seconds, tv_nsec: 0)
        _ = nanosleep(&request, nil)
    }
}
