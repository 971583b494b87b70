import Crypto
import PimeshCore

/// The heartbeat tag: HMAC-SHA256 under the agent's secret over the signed part, truncated to
/// 16 bytes (RFC 2104 §5 allows truncation to half the hash). Agents sign with it, the lead checks with it.
// SymmetricKey is an immutable value that swift-crypto 3 does not mark Sendable; it is never
// mutated after init, so sharing it across the lead's threads is safe.
public struct HeartbeatTag: @unchecked Sendable {
    private let key: SymmetricKey

    public init(secret: [UInt8]) {
        key = SymmetricKey(data: secret)
    }

    /// Calls `body` with the full 32-byte tag of `signed` (the first 48 bytes of a datagram).
    public func withTag<R>(of signed: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let code = HMAC<SHA256>.authenticationCode(for: signed, using: key)
        return code.withUnsafeBytes(body)
    }

    /// Whether the datagram's tag is the one its signed part should carry under this key.
    public func verifies(_ datagram: HeartbeatDatagram, bytes: UnsafeRawBufferPointer) -> Bool {
        let signed = UnsafeRawBufferPointer(rebasing: bytes[0..<HeartbeatDatagram.signedLength])
        return withTag(of: signed) { datagram.tagMatches($0) }
    }

    /// A whole signed datagram.
    public func seal(_ datagram: HeartbeatDatagram) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: HeartbeatDatagram.size)
        bytes.withUnsafeMutableBytes { buffer in
            datagram.encodeSignedPart(into: buffer)
            let signed = UnsafeRawBufferPointer(rebasing: buffer[0..<HeartbeatDatagram.signedLength])
            withTag(of: signed) { tag in
                for i in 0..<HeartbeatDatagram.tagLength {
                    buffer[HeartbeatDatagram.signedLength + i] = tag[i]
                }
            }
        }
        return bytes
    }
}
