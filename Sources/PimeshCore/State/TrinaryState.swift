/// Seed 001 §1.4: every agent is READY (+1), TRANSIT (0) or CONFLICT (−1) relative to a
/// coordination event. CONFLICT is information, not failure.
public enum TrinaryState: Int8, CaseIterable, Codable, Sendable, CustomStringConvertible {
    case ready = 1
    case transit = 0
    case conflict = -1

    public var description: String {
        switch self {
        case .ready: "READY"
        case .transit: "TRANSIT"
        case .conflict: "CONFLICT"
        }
    }

    /// Seed 001: an agent whose last heartbeat is older than `staleAfter` (1 s by default) is
    /// TRANSIT whatever it last reported; before its first heartbeat it is TRANSIT too.
    public static func observed(reported: TrinaryState, lastHeartbeat: Instant?, now: Instant, staleAfter: Duration) -> TrinaryState {
        guard let lastHeartbeat, now - lastHeartbeat <= staleAfter else { return .transit }
        return reported
    }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.description == name.uppercased() }) else { return nil }
        self = match
    }
}
