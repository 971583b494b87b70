import NIOPosix
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// How many items each simulated agent holds right now: its queue depth in heartbeats, and what
/// slows its next item down as the seed's `estimate_processing` says.
final class HeldWork: Sendable {
    private let counts: Mutex<[Int]>

    init(count: Int) {
        counts = Mutex(Array(repeating: 0, count: count))
    }

    func count(_ index: Int) -> Int {
        counts.withLock { $0[index] }
    }

    /// Returns how many were held before this one.
    func take(_ index: Int) -> Int {
        counts.withLock { counts in
            counts[index] += 1
            return counts[index] - 1
        }
    }

    func release(_ index: Int) {
        counts.withLock { $0[index] -= 1 }
    }
}

extension SimulatedSwarm {
    /// Each agent long-polls its inbox and works on what comes concurrently, each item taking
    /// latency + `estimate_processing(class, weight, held)` ± 5 %, then posts the result. The
    /// blocking HTTP calls run on a thread pool with a thread per agent, off the async executor.
    func work(_ identities: [(Int, AgentCredentials)], profiles: [SwarmAgentProfile], held: HeldWork) async throws {
        let pool = NIOThreadPool(numberOfThreads: identities.count + 8)
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (offset, (index, credentials)) in identities.enumerated() {
                let profile = profiles[index]
                var rng = SplitMix64(seed: self.settings.seed &+ 0x9E37_79B9 &* UInt64(index + 1))
                group.addTask {
                    let agent = PimeshAgent(credentials: credentials)
                    try await withThrowingTaskGroup(of: Void.self) { items in
                        while !Task.isCancelled {
                            let pulled: [WorkItem]
                            do {
                                pulled = try await pool.abandoningOnCancel { [settings = self.settings] in
                                    try LeadClient.forAgent(credentials, dataDir: settings.dataDir).pullWork(agentID: credentials.id, waitMs: 10_000, max: 8)
                                }
                            } catch {
                                // The lead may be restarting: look for it again shortly.
                                try await Task.sleep(for: .milliseconds(200))
                                continue
                            }
                            for item in pulled {
                                let before = held.take(offset)
                                let latency = profile.latencySample(using: &rng)
                                let noise = Double.random(in: 0.95...1.05, using: &rng)
                                let roll = Double.random(in: 0..<1, using: &rng)
                                items.addTask {
                                    defer { held.release(offset) }
                                    let processing =
                                        profile.agentClass.estimateProcessingMs(payloadWeight: item.weight, queueDepth: before) * noise
                                    try await Task.sleep(for: .milliseconds(latency + processing))
                                    let reply = self.reply(to: item, roll: roll, name: credentials.name)
                                    try await self.deliver(reply, for: item, agent: agent, pool: pool)
                                }
                            }
                        }
                        items.cancelAll()
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    /// The same work, taken from datagrams the heartbeat loop received: an item is worked on at
    /// once, a fetch is a short poll. The pool only posts results, so it needs few threads.
    func work(_ identities: [(Int, AgentCredentials)], profiles: [SwarmAgentProfile], held: HeldWork, inbound: AsyncStream<Inbound>) async throws {
        let pool = NIOThreadPool(numberOfThreads: min(identities.count, 16) + 4)
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        var rngs = identities.map { SplitMix64(seed: self.settings.seed &+ 0x9E37_79B9 &* UInt64($0.0 + 1)) }
        let agents = identities.map { PimeshAgent(credentials: $0.1) }
        // Discarding: a swarm that runs for hours must not keep every finished item's task.
        try await withThrowingDiscardingTaskGroup { items in
            for await arrival in inbound {
                let offset = arrival.offset
                let credentials = identities[offset].1
                let profile = profiles[identities[offset].0]
                var work: [WorkItem] = []
                switch arrival.received {
                case .item(let item):
                    work = [item]
                case .fetch:
                    work = (try? await pool.abandoningOnCancel { [settings = self.settings] in
                        try LeadClient.forAgent(credentials, dataDir: settings.dataDir).pullWork(agentID: credentials.id, waitMs: 0, max: 8)
                    }) ?? []
                }
                for item in work {
                    let before = held.take(offset)
                    let latency = profile.latencySample(using: &rngs[offset])
                    let noise = Double.random(in: 0.95...1.05, using: &rngs[offset])
                    let roll = Double.random(in: 0..<1, using: &rngs[offset])
                    let agent = agents[offset]
                    items.addTask {
                        defer { held.release(offset) }
                        let processing = profile.agentClass.estimateProcessingMs(payloadWeight: item.weight, queueDepth: before) * noise
                        try await Task.sleep(for: .milliseconds(latency + processing))
                        try await self.deliver(self.reply(to: item, roll: roll, name: credentials.name), for: item, agent: agent, pool: pool)
                    }
                }
            }
            items.cancelAll()
        }
    }

    func reply(to item: WorkItem, roll: Double, name: String) -> PimeshAgent.Reply {
        let conflict = ConflictReport(type: .dataContradiction, expected: "consensus", received: name)
        switch item.kind {
        case .task:
            if roll < settings.failRate { return .failed(error: "simulated failure (--fail-rate \(settings.failRate))") }
            return .succeeded(result: "done by \(name)")
        case .ask, .broadcast:
            if roll < settings.conflictRate { return .conflict(conflict, result: nil) }
            return .answer(.ready, item.kind == .ask ? "\(name): ok" : nil)
        }
    }

    /// Posts a reply, retrying for up to 30 s while the lead is unreachable (restarting).
    func deliver(_ reply: PimeshAgent.Reply, for item: WorkItem, agent: PimeshAgent, pool: NIOThreadPool) async throws {
        let giveUp = Clock.monotonicNow() + .seconds(30)
        while true {
            do {
                try await pool.runIfActive { [settings] in
                    try agent.send(reply, for: item, client: LeadClient.forAgent(agent.credentials, dataDir: settings.dataDir))
                }
                return
            } catch let error as LeadClient.APIError where error.status < 500 {
                // Refused for good (a late answer, a cancelled task): nothing to retry.
                return
            } catch {
                if Clock.monotonicNow() > giveUp { return }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}

extension NIOThreadPool {
    /// Runs blocking work on the pool; when the task is cancelled the caller goes on at once and
    /// the blocking call finishes on its own. A long poll then cannot hold up the swarm's shutdown.
    func abandoningOnCancel<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let slot = Mutex<CheckedContinuation<T, any Error>?>(nil)
        @Sendable func finish(_ result: Result<T, any Error>) {
            slot.withLock { continuation in
                continuation?.resume(with: result)
                continuation = nil
            }
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                slot.withLock { $0 = continuation }
                if Task.isCancelled { return finish(.failure(CancellationError())) }
                self.submit { state in
                    guard case .active = state else { return finish(.failure(CancellationError())) }
                    finish(Result(catching: body))
                }
            }
        } onCancel: {
            finish(.failure(CancellationError()))
        }
    }
}
