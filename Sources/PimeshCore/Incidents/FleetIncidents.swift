/// The coordinator's view across the fleet: incidents that started within `window` of each
/// other on different nodes are one fleet event (a shared upstream, a bad rollout), grouped
/// so that an operator sees one thing and not twenty.
public enum FleetIncidents {
    public static let window = Duration.seconds(60)

    public struct Entry: Sendable, Equatable {
        public var node: String
        public var id: Int64
        public var openedMs: Int64

        public init(node: String, id: Int64, openedMs: Int64) {
            self.node = node
            self.id = id
            self.openedMs = openedMs
        }
    }

    /// Groups in time order: an incident joins the group whose latest incident opened within
    /// `window` before it; a group holds at least two nodes or it is one incident alone.
    public static func group(_ entries: [Entry], window: Duration = window) -> [[Entry]] {
        let windowMs = window.wholeNanoseconds / 1_000_000
        var groups: [[Entry]] = []
        for entry in entries.sorted(by: { ($0.openedMs, $0.node, $0.id) < ($1.openedMs, $1.node, $1.id) }) {
            // Sorted, so the difference is never negative; it overflows only for times no lead
            // writes (the coordinator refuses them, older rows may hold them): far apart.
            if let last = groups.last?.last, case let (gap, overflow) = entry.openedMs.subtractingReportingOverflow(last.openedMs),
                !overflow, gap <= windowMs
            {
                groups[groups.count - 1].append(entry)
            } else {
                groups.append([entry])
            }
        }
        // Several incidents of one node alone are that node's business: split them again.
        return groups.flatMap { group in Set(group.map(\.node)).count >= 2 ? [group] : group.map { [$0] } }
    }
}
