import Crypto
import PimeshCore

/// An agent's own API credential (issue 12, as k3s splits server and agent tokens): derived
/// from its secret and bound to its id, so it can pull only its own work and post only its own
/// results and answers. Sent as `Authorization: Bearer agent.<id>.<64 hex>`, where the hex is
/// HMAC-SHA256(secret, "pimesh-agent-api-v1:" + id). The message is 56 bytes, never the 48 of a
/// heartbeat's signed part, so a credential can never be taken for a heartbeat tag.
public enum AgentAPICredential {
    static let context = "pimesh-agent-api-v1:"
    static let prefix = "agent."

    public static func mac(agentID: AgentID, tag: HeartbeatTag) -> [UInt8] {
        let message = Array((context + agentID.description).utf8)
        return message.withUnsafeBytes { bytes in tag.withTag(of: bytes) { Array($0) } }
    }

    /// The bearer token an agent sends.
    public static func bearer(for credentials: AgentCredentials) -> String? {
        guard let secret = credentials.secretBytes else { return nil }
        return prefix + credentials.id.description + "." + Hex.encode(mac(agentID: credentials.id, tag: HeartbeatTag(secret: secret)))
    }

    /// The id and MAC of a bearer token that claims to be an agent's; nil for any other token.
    public static func parse(_ bearer: Substring) -> (AgentID, [UInt8])? {
        guard bearer.hasPrefix(prefix) else { return nil }
        let rest = bearer.dropFirst(prefix.count)
        guard let dot = rest.lastIndex(of: "."), let id = AgentID(String(rest[..<dot])),
            let mac = Hex.decode(String(rest[rest.index(after: dot)...])), mac.count == 32
        else { return nil }
        return (id, mac)
    }
}
