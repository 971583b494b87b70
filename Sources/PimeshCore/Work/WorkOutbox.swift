/// The lead's side of work datagrams to one agent: what it sent and the agent has not yet
/// acknowledged, when to send each again, and when to stop trying. A task's lease still bounds
/// the whole: a datagram given up on only means the task waits for its lease to run out.
public struct WorkOutbox<Item: Sendable>: Sendable {
    public struct Settings: Sendable, Equatable {
        /// The first retransmission; each later one waits twice as long, up to `maxInterval`.
        public var retransmitAfter: Duration
        public var maxInterval: Duration
        /// Sends of one datagram, the first included.
        public var maxSends: Int
        /// Unacknowledged datagrams at once: the acknowledgement window holds 65 sequences.
        public var capacity: Int

        public init(
            retransmitAfter: Duration = .milliseconds(300), maxInterval: Duration = .seconds(2), maxSends: Int = 8, capacity: Int = 32
        ) {
            self.retransmitAfter = retransmitAfter
            self.maxInterval = maxInterval
            self.maxSends = maxSends
            self.capacity = min(capacity, 64)
        }
    }

    public struct Pending: Sendable {
        public var sequence: UInt64
        public var item: Item
        public var sends: Int
        public var nextAt: Instant
        var interval: Duration
    }

    public let settings: Settings
    public private(set) var pending: [Pending] = []
    public private(set) var nextSequence: UInt64
    /// Datagrams given up on after `maxSends`.
    public private(set) var givenUp = 0

    /// `firstSequence`: a lead starts above any sequence an earlier lead could have used (see
    /// `firstSequence(wallMicroseconds:agentHighest:)`), so that agents never take a new
    /// datagram for a repeat.
    public init(firstSequence: UInt64, settings: Settings = Settings()) {
        self.settings = settings
        nextSequence = max(1, firstSequence)
    }

    /// A link's first sequence: the wall clock in microseconds, above what earlier leads used
    /// while it only moved forward, and above the highest the agent's heartbeats acknowledge.
    /// A Pi's clock steps back at times (fake-hwclock's time at boot after a power cut, an NTP
    /// correction): from the clock alone, a lead restarted then sends below the agent's window,
    /// which drops every datagram as a repeat until the clock catches up.
    public static func firstSequence(wallMicroseconds: UInt64, agentHighest: UInt64) -> UInt64 {
        // Past half the range the agent is broken or hostile: following it could run the
        // sequence to its end, so it gets the clock's and only loses its own datagrams.
        guard agentHighest < UInt64.max / 2 else { return wallMicroseconds }
        return Swift.max(wallMicroseconds, agentHighest + 1)
    }

    /// Room for another datagram: fewer than `capacity` unacknowledged, and none so far behind
    /// that the next sequence would push it out of the agent's 64-sequence window (the agent
    /// would then take its retransmission for a replay and never acknowledge it).
    public var hasRoom: Bool {
        guard pending.count < settings.capacity else { return false }
        guard let oldest = pending.first?.sequence else { return true }
        return nextSequence - oldest < 64
    }

    /// Records a datagram sent now; returns its sequence.
    public mutating func sent(_ item: Item, at now: Instant) -> UInt64 {
        precondition(hasRoom)
        let sequence = nextSequence
        nextSequence += 1
        pending.append(Pending(sequence: sequence, item: item, sends: 1, nextAt: now + settings.retransmitAfter, interval: settings.retransmitAfter))
        return sequence
    }

    /// Removes what `ack` covers; returns how many.
    @discardableResult
    public mutating func acknowledge(_ ack: WorkAck) -> Int {
        let before = pending.count
        pending.removeAll { ack.covers($0.sequence) }
        return before - pending.count
    }

    /// Drops entries whose item no longer needs sending (its task was requeued elsewhere).
    /// How many were removed.
    @discardableResult
    public mutating func remove(where shouldRemove: (Item) -> Bool) -> Int {
        let before = pending.count
        pending.removeAll { shouldRemove($0.item) }
        return before - pending.count
    }

    /// The datagrams to send again now, oldest first; those sent `maxSends` times are dropped.
    public mutating func due(at now: Instant) -> [Pending] {
        var resend: [Pending] = []
        var kept: [Pending] = []
        for var entry in pending {
            guard entry.nextAt <= now else {
                kept.append(entry)
                continue
            }
            if entry.sends >= settings.maxSends {
                givenUp += 1
                continue
            }
            entry.sends += 1
            entry.interval = min(entry.interval * 2, settings.maxInterval)
            entry.nextAt = now + entry.interval
            resend.append(entry)
            kept.append(entry)
        }
        pending = kept
        return resend
    }

    public var nextDue: Instant? { pending.map(\.nextAt).min() }
}
