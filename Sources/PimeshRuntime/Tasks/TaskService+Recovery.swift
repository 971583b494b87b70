import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem

extension TaskService {
    /// Seed 000 OrphanedTaskMigrator: the unfinished tasks of a failed agent go to live agents
    /// with the capability, each to the owner of its id on a consistent-hash ring, and keep
    /// their id: a replay is the same task, and the first result wins (a late result of the
    /// failed agent is a duplicate). Tasks with no live agent wait in the queue.
    /// Returns how many moved to an agent and how many were queued.
    /// A removed agent's datagram link and empty inbox go with it (its tasks moved first, by
    /// `migrateOrphans`): they would otherwise stay for as long as the lead runs.
    func forget(agent id: AgentID) {
        state.withLock { state in
            state.links[id] = nil
            state.linksAwaitingAck.remove(id)
            if let inbox = state.inboxes[id], inbox.items.isEmpty, inbox.waiter == nil { state.inboxes[id] = nil }
        }
    }

    /// What `migrateOrphans` did with an agent's tasks.
    struct OrphanMigration: Sendable {
        var migrated = 0
        var queued = 0
        /// Handed out `tasks.max_attempts` times, each time to an agent that then failed: a task
        /// that takes its agents down would otherwise go on to take down every one in turn.
        var failed = 0

        var moved: Int { migrated + queued + failed }

        var summary: String {
            "\(migrated) task(s) sent to live agents by the hash ring, \(queued) queued"
                + (failed > 0 ? ", \(failed) failed after tasks.max_attempts hand-outs" : "")
        }
    }

    /// `agentFailed`: the agent failed (not left): a task it was running counts it against
    /// `tasks.max_attempts`, as a lease that ran out does.
    func migrateOrphans(of failed: AgentID, agentFailed: Bool = false, now: Instant) -> OrphanMigration {
        var writes: [TaskRow] = []
        var finished: [TaskRow] = []
        var outcome = OrphanMigration()
        state.withLock { state in
            let orphans = state.open.values.filter {
                $0.durable && $0.row.agentID == failed && ($0.row.state == .assigned || $0.row.state == .running)
            }.map(\.row.id).sorted()
            guard !orphans.isEmpty else { return }
            state.inboxes[failed]?.items.removeAll { $0.kind == .task }
            for id in orphans { release(task: id, from: failed, in: &state) }
            var rings: [String: (ring: ConsistentHashRing, ids: [String: AgentID])] = [:]
            for id in orphans {
                guard var task = state.open[id] else { continue }
                let capability = task.row.capability
                if rings[capability] == nil {
                    let live = registry.liveAgents(capability: capability, at: now).filter { $0.id != failed }
                    rings[capability] = (
                        ConsistentHashRing(members: live.map(\.name)), Dictionary(uniqueKeysWithValues: live.map { ($0.name, $0.id) })
                    )
                }
                task.leaseExpires = nil
                task.routedAt = nil
                task.resultUnstored = false
                task.takeBack(from: failed)
                if agentFailed && task.row.state == .running && task.row.attempts >= settings.maxAttempts {
                    task.giveUp("its agent failed while running it, \(task.row.attempts) times (tasks.max_attempts)", atMs: Clock.wallMilliseconds())
                    finish(task.row, in: &state)
                    outcome.failed += 1
                    writes.append(task.row)
                    finished.append(task.row)
                    continue
                }
                if let ring = rings[capability], let owner = ring.ring.owner(of: id), let target = ring.ids[owner] {
                    task.row.state = .assigned
                    task.row.agentID = target
                    task.routedAt = now
                    task.leaseExpires = now + lease
                    doorbell.ring()
                    registry.recordDispatch(to: target, at: now)
                    state.open[id] = task
                    deliver(Self.workItem(task.row), to: target, in: &state)
                    outcome.migrated += 1
                } else {
                    task.row.state = .queued
                    task.row.agentID = nil
                    state.open[id] = task
                    state.queued.append(id)
                    doorbell.ring()
                    outcome.queued += 1
                }
                state.counters.requeued += 1
                writes.append(task.row)
            }
        }
        persist(writes)
        for row in finished {
            metrics.taskFinished(state: row.state, after: nil)
            reportOutcome(row)
        }
        return outcome
    }

    /// Seed 000 CapacityAwareRebalancer: per capability, work that waits in agents' inboxes
    /// (not yet pulled) moves from the busiest agent to the idlest live one when the queues vary
    /// by more than 15 %. An agent that cannot take work (frozen, hung) only gives. Returns the
    /// moves made, by agent name.
    func stealWork(now: Instant, planner: WorkStealing = WorkStealing()) -> [(from: String, to: String, count: Int, capability: String)] {
        var writes: [TaskRow] = []
        var done: [(String, String, Int, String)] = []
        state.withLock { state in
            var capabilities = Set<String>()
            for inbox in state.inboxes.values {
                for item in inbox.items where item.kind == .task { if let capability = item.capability { capabilities.insert(capability) } }
            }
            for capability in capabilities.sorted() {
                let receivers = registry.liveAgents(capability: capability, at: now)
                guard !receivers.isEmpty else { continue }
                let receiverIDs = Set(receivers.map(\.id))
                var live = receivers
                // An agent on its breaker's trial keeps its trial task: the breaker closes or
                // opens again only on that task's outcome.
                for (agent, inbox) in state.inboxes where !receiverIDs.contains(agent) && !registry.isOnBreakerTrial(agent) {
                    if inbox.items.contains(where: { $0.kind == .task && $0.capability == capability }), let name = registry.name(of: agent) {
                        live.append((agent, name))
                    }
                }
                guard live.count > 1 else { continue }
                let queues = live.map { agent in
                    state.inboxes[agent.id]?.items.filter { $0.kind == .task && $0.capability == capability }.count ?? 0
                }
                for move in planner.plan(queues, canReceive: live.map { receiverIDs.contains($0.id) }) {
                    let from = live[move.from].id
                    let to = live[move.to].id
                    guard let items = state.inboxes[from]?.items else { continue }
                    // The newest waiting items move: the oldest are next in line where they are.
                    let movable = items.filter { $0.kind == .task && $0.capability == capability }.suffix(move.count)
                    let ids = Set(movable.map(\.id))
                    state.inboxes[from]?.items.removeAll { ids.contains($0.id) }
                    for item in movable {
                        guard var task = state.open[item.id] else { continue }
                        task.row.agentID = to
                        task.routedAt = now
                        task.leaseExpires = now + lease
                        doorbell.ring()
                        state.open[item.id] = task
                        writes.append(task.row)
                        deliver(item, to: to, in: &state)
                    }
                    done.append((live[move.from].name, live[move.to].name, movable.count, capability))
                }
            }
        }
        persist(writes)
        return done.map { (from: $0.0, to: $0.1, count: $0.2, capability: $0.3) }
    }

    /// How long the oldest task not yet pulled has waited at each agent: the canary's queue latency.
    func queueLatencies(now: Instant) -> [AgentID: Double] {
        state.withLock { state in
            var result: [AgentID: Double] = [:]
            for (agent, inbox) in state.inboxes {
                var oldest = 0.0
                for item in inbox.items where item.kind == .task {
                    if let routedAt = state.open[item.id]?.routedAt { oldest = max(oldest, (now - routedAt).milliseconds) }
                }
                if oldest > 0 { result[agent] = oldest }
            }
            return result
        }
    }
}
