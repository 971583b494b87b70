/// Why a heartbeat datagram was dropped. Every dropped datagram is counted under exactly one.
public enum HeartbeatDropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Fewer bytes than a v1 datagram.
    case short
    /// More bytes than a v1 datagram.
    case long
    /// The version byte is not one this lead speaks.
    case unknownVersion
    /// Reserved bits set or a state byte outside −1…1.
    case malformed
    /// Well-formed, but no agent with that id is registered.
    case unknownAgent
    /// The HMAC tag does not match the agent's secret: forged or corrupted.
    case badTag
    /// The iteration is not above the last accepted one: a replay or a reordered duplicate.
    case replayed
    /// The timestamp is too far from the lead's clock to be a live heartbeat.
    case stale

    /// The name used in JSON, metrics and docs.
    public var description: String {
        switch self {
        case .short: "short"
        case .long: "long"
        case .unknownVersion: "unknown_version"
        case .malformed: "malformed"
        case .unknownAgent: "unknown_agent"
        case .badTag: "bad_tag"
        case .replayed: "replayed"
        case .stale: "stale"
        }
    }
}
