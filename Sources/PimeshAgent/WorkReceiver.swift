import PimeshCore
import PimeshSystem

/// An agent's side of work datagrams: checks the lead's signature, takes each sequence once,
/// and keeps what its next heartbeat acknowledges.
public struct WorkReceiver: Sendable {
    public let agentID: AgentID
    private let tag: HeartbeatTag
    public private(set) var window = WorkWindow()
    /// Datagrams refused (damaged, forged, for another agent) and repeats ignored.
    public private(set) var refused = 0
    public private(set) var duplicates = 0

    public init(agentID: AgentID, tag: HeartbeatTag) {
        self.agentID = agentID
        self.tag = tag
    }

    public enum Received: Sendable, Equatable {
        case item(WorkItem)
        /// Work waits that did not fit in a datagram: take it with a short poll.
        case fetch
    }

    /// A new, genuine work datagram for this agent; nil for anything else.
    public mutating func accept(_ bytes: UnsafeRawBufferPointer) -> Received? {
        guard case .work(let datagram, let signedLength) = WorkDatagram.decode(bytes), datagram.agentID == agentID else {
            refused += 1
            return nil
        }
        let genuine = tag.withTag(of: UnsafeRawBufferPointer(rebasing: bytes[0..<signedLength])) { computed in
            var difference: UInt8 = 0
            for i in 0..<WorkDatagram.tagLength { difference |= computed[i] ^ bytes[signedLength + i] }
            return difference == 0
        }
        guard genuine else {
            refused += 1
            return nil
        }
        // Only after the tag: a forged sequence must not move the window.
        guard window.receive(datagram.sequence) else {
            duplicates += 1
            return nil
        }
        switch datagram.kind {
        case .fetch:
            return .fetch
        case .item:
            guard let item = try? APICoding.decode(WorkItem.self, from: datagram.body) else {
                refused += 1
                return nil
            }
            return .item(item)
        }
    }
}
