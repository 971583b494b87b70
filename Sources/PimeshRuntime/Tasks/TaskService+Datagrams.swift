import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem
import Synchronization

/// The heartbeat listener's UDP socket, which work datagrams leave through: agents receive
/// them on the socket their heartbeats come from, so no agent holds a connection for its work.
final class DatagramOutlet: Sendable {
    private let socket = Mutex<HeartbeatSocket?>(nil)

    init() {}

    func attach(_ socket: HeartbeatSocket) {
        self.socket.withLock { $0 = socket }
    }

    func detach() {
        socket.withLock { $0 = nil }
    }

    /// A lost datagram is what retransmission is for.
    func send(_ bytes: [UInt8], to peer: DatagramPeer) {
        socket.withLock { $0 }?.send(bytes, to: peer)
    }
}

extension TaskService {
    /// One work datagram kept for retransmission.
    struct OutboxItem: Sendable {
        /// What a datagram carries: when that goes (a task finished, a gather closed), so does
        /// the datagram.
        enum Carried: Sendable, Equatable {
            case task(String)
            /// An ask's or a broadcast's message, by its operation.
            case message(String)
            case fetch
        }

        var bytes: [UInt8]
        var carried: Carried
    }

    /// An agent that takes its work as datagrams: where its heartbeats come from, and what it
    /// has not yet acknowledged.
    struct WorkLink: Sendable {
        var address: DatagramPeer
        var outbox: WorkOutbox<OutboxItem>
        var lastFetchAt: Instant?
        /// The last v2 heartbeat: a link not heard from within the stale time takes no datagrams
        /// (the agent is gone, or an older client took its place and long-polls).
        var heardAt: Instant
        /// Tasks the agent works on at once (0: no limit), and those sent to it and not finished.
        var slots: Int
        var inFlight: Set<String> = []
    }

    /// Called for each accepted v2 heartbeat over UDP: its source becomes the agent's work
    /// address, and it acknowledges datagrams.
    func heard(agent: AgentID, ack: WorkAck, slots: Int, from address: DatagramPeer) {
        guard settings.workDatagrams else { return }
        var writes: [TaskRow] = []
        let now = Clock.monotonicNow()
        state.withLock { state in
            // One lookup, changed in place: every heartbeat of every agent comes through here.
            if let index = state.links.index(forKey: agent) {
                let awaitingAck = state.linksAwaitingAck.contains(agent)
                let heard = Self.refresh(&state.links.values[index], at: now, slots: slots, address: address, ack: awaitingAck ? ack : nil)
                state.datagrams.acknowledged += heard.acknowledged
                if awaitingAck && heard.drained { state.linksAwaitingAck.remove(agent) }
            } else {
                // Not from the lead's start: a link made again after going stale, or by a new
                // lead, must not repeat sequences the agent's window already holds.
                let first = WorkOutbox<OutboxItem>.firstSequence(wallMicroseconds: Self.wallMicroseconds(), agentHighest: ack.highest)
                state.links[agent] = WorkLink(
                    address: address, outbox: WorkOutbox(firstSequence: first, settings: settings.outbox), heardAt: now, slots: slots)
            }
            if let inbox = state.inboxes.index(forKey: agent), !state.inboxes.values[inbox].items.isEmpty {
                sendDatagrams(to: agent, now: now, in: &state, writes: &writes)
            }
        }
        persist(writes)
    }

    /// One access to the link: reading a field through the dictionary's values copied the
    /// whole link (its outbox and in-flight set retained) for each heartbeat (perf, issue 14).
    private static func refresh(
        _ link: inout WorkLink, at now: Instant, slots: Int, address: DatagramPeer, ack: WorkAck?
    ) -> (acknowledged: Int, drained: Bool) {
        link.heardAt = now
        link.slots = slots
        if link.address != address { link.address = address }
        guard let ack else { return (0, false) }
        let acknowledged = link.outbox.acknowledge(ack)
        return (acknowledged, link.outbox.pending.isEmpty)
    }

    /// Sends what waits in the agent's inbox, one item per datagram, while its outbox has room.
    /// An item too large for a datagram stays in the inbox and the agent is told to fetch it.
    func sendDatagrams(to agent: AgentID, now: Instant, in state: inout State, writes: inout [TaskRow]) {
        guard var link = state.links[agent], state.inboxes[agent]?.waiter == nil, let tag = registry.tag(of: agent) else { return }
        guard now - link.heardAt < settings.linkStaleAfter else {
            // Its work waits in the inbox for a long poll or the agent's return.
            state.links[agent] = nil
            state.linksAwaitingAck.remove(agent)
            return
        }
        defer { state.links[agent] = link }
        while link.outbox.hasRoom {
            // Asks and broadcasts go at once; a task only into a free slot, so that the rest
            // waits in the inbox, where the router's queue depth sees it and stealing can move it.
            let slotFree = link.slots == 0 || link.inFlight.count < link.slots
            guard let index = state.inboxes[agent]?.items.firstIndex(where: { $0.kind != .task || slotFree }) else { return }
            var next = state.inboxes[agent]!.items[index]
            if next.kind == .task { next.attempt = (state.open[next.id]?.row.attempts ?? 0) + 1 }
            guard let body = try? APICoding.encode(next), body.count <= WorkDatagram.maxBodyLength else {
                if link.lastFetchAt.map({ now - $0 >= settings.outbox.retransmitAfter }) ?? true,
                    !link.outbox.pending.contains(where: { $0.item.carried == .fetch })
                {
                    link.lastFetchAt = now
                    transmit(.fetch, body: [], carrying: .fetch, to: agent, link: &link, tag: tag, now: now, in: &state)
                    state.datagrams.fetches += 1
                }
                return
            }
            if index != 0 { state.inboxes[agent]!.items.insert(state.inboxes[agent]!.items.remove(at: index), at: 0) }
            guard let item = take(from: agent, max: 1, now: now, in: &state, writes: &writes).first else { continue }
            if item.kind == .task { link.inFlight.insert(item.id) }
            transmit(.item, body: body, carrying: item.kind == .task ? .task(item.id) : .message(item.id), to: agent, link: &link, tag: tag, now: now, in: &state)
        }
    }

    private func transmit(
        _ kind: WorkDatagram.Kind, body: [UInt8], carrying carried: OutboxItem.Carried, to agent: AgentID, link: inout WorkLink, tag: HeartbeatTag, now: Instant,
        in state: inout State
    ) {
        let datagram = WorkDatagram(
            kind: kind, agentID: agent, sequence: link.outbox.nextSequence, timestampMs: Clock.wallMilliseconds(), body: body)
        var bytes = datagram.signedPart()
        bytes.withUnsafeBytes { signed in tag.withTag(of: signed) { bytes += $0.prefix(WorkDatagram.tagLength) } }
        _ = link.outbox.sent(OutboxItem(bytes: bytes, carried: carried), at: now)
        state.linksAwaitingAck.insert(agent)
        state.datagrams.sent += 1
        outlet.send(bytes, to: link.address)
        doorbell.ring()
    }

    static func wallMicroseconds() -> UInt64 {
        UInt64(max(0, Clock.wallMilliseconds())) * 1000
    }

    /// A task left the agent (finished, cancelled, requeued, given to another): it leaves its
    /// inbox, its slot is free and its datagram is not sent again. Every way out goes through
    /// here: a slot kept for a task the agent no longer has starved an agent of one slot for
    /// good, and a datagram kept for a finished task held an outbox place through eight sends
    /// (issue 14's probe). Returns whether a slot was freed while work waits in the inbox.
    @discardableResult
    func release(task: String, from agent: AgentID, in state: inout State) -> Bool {
        state.inboxes[agent]?.items.removeAll { $0.kind == .task && $0.id == task }
        guard let index = state.links.index(forKey: agent) else { return false }
        state.links.values[index].outbox.remove { $0.carried == .task(task) }
        let freed = state.links.values[index].inFlight.remove(task) != nil
        return freed && state.inboxes[agent]?.items.isEmpty == false
    }

    /// A task of the agent's finished or was cancelled: what waits in its inbox takes the slot.
    func freeSlot(of agent: AgentID, task: String, now: Instant, in state: inout State, writes: inout [TaskRow]) {
        if release(task: task, from: agent, in: &state) { sendDatagrams(to: agent, now: now, in: &state, writes: &writes) }
    }

    /// Sends again what was not acknowledged in time.
    func retransmit(now: Instant, in state: inout State) {
        for agent in state.linksAwaitingAck {
            guard var link = state.links[agent] else { continue }
            let givenUpBefore = link.outbox.givenUp
            for entry in link.outbox.due(at: now) {
                outlet.send(entry.item.bytes, to: link.address)
                state.datagrams.retransmitted += 1
            }
            state.datagrams.givenUp += link.outbox.givenUp - givenUpBefore
            if link.outbox.pending.isEmpty { state.linksAwaitingAck.remove(agent) }
            state.links[agent] = link
        }
    }
}
