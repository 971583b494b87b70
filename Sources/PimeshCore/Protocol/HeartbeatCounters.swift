/// Accepted and dropped heartbeats by reason. Fixed storage: counting never allocates.
public struct HeartbeatCounters: Sendable, Equatable {
    public private(set) var accepted = 0
    private var dropped = Array(repeating: 0, count: HeartbeatDropReason.allCases.count)

    public init() {}

    public mutating func recordAccepted() {
        accepted += 1
    }

    public mutating func recordDropped(_ reason: HeartbeatDropReason) {
        dropped[reason.rawValue] += 1
    }

    public func dropped(_ reason: HeartbeatDropReason) -> Int {
        dropped[reason.rawValue]
    }

    public var totalDropped: Int {
        dropped.reduce(0, +)
    }

    /// Every reason with its count, zeros included, so scripts can rely on the keys.
    public var droppedByReason: [(reason: HeartbeatDropReason, count: Int)] {
        HeartbeatDropReason.allCases.map { ($0, dropped[$0.rawValue]) }
    }
}
