import PimeshCore
import PimeshSystem

/// A node enrolling itself with the coordinator (`pimesh coordinator join`, run by the first
/// boot of an injected image): its public key and proof that it holds the private half.
public struct NodeEnrollment: Codable, Sendable {
    public var publicKey: String
    public var signature: String

    /// What the signature covers: a signature made for a snapshot or a release never passes.
    public static func signedMessage(publicKey: String) -> [UInt8] {
        Array("pimesh-enroll-v1 \(publicKey)".utf8)
    }

    public init(key: NodeKey) throws {
        publicKey = key.publicKeyHex
        signature = Hex.encode(try key.sign(Self.signedMessage(publicKey: key.publicKeyHex)))
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// PUT `<coordinator>/v1/enrollments/<node_id>` with the enroll token; true when the node
    /// was enrolled now, false when it already was.
    public func send(to coordinator: String, token: String) throws -> Bool {
        let base = coordinator.hasSuffix("/") ? String(coordinator.dropLast()) : coordinator
        let nodeID = NodeKey.nodeID(publicKeyHex: publicKey)
        // libcurl in this process: `pimesh coordinator join` ends right after.
        let request = PutRequest(url: "\(base)/v1/enrollments/\(nodeID)", headers: ["Authorization: Bearer \(token)", "Content-Type: application/json"], timeoutS: 30)
        let answer = try InProcessPut().put(request, body: .bytes(try APICoding.encode(self)), abort: TransferAbort())
        switch answer.status {
        case 201: return true
        case 200: return false
        default:
            throw Failure(description: "\(base) answered \(answer.status): \(answer.bodyExcerpt)")
        }
    }
}
