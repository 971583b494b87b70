import Crypto
import PimeshCore

/// The heartbeat tag: HMAC-SHA256 under the agent's secret over the signed part, truncated to
/// 16 bytes (RFC 2104 §5 allows truncation to half the hash). Agents sign with it, the lead checks with it.
// The keyed HMAC is copied before each use and never mutated in place, so sharing it across
// the lead's threads is safe even where swift-crypto does not mark its parts Sendable.
public struct HeartbeatTag: @unchecked Sendable {
    /// Keyed once: the padded key and its inner and outer hash states are computed at
    /// registration, not per datagram.
    private let keyed: HMAC<SHA256>

    public init(secret: [UInt8]) {
        keyed = HMAC<SHA256>(key: SymmetricKey(data: secret))
    }

    /// Calls `body` with the full 32-byte tag of `signed` (the first 48 bytes of a datagram).
    public func withTag<R>(of signed: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var authenticator = keyed
        authenticator.update(data: signed)
        return authenticator.finalize().withUnsafeBytes(body)
    }

    /// Whether the datagram's tag is the one its signed part should carry under this key.
    public func verifies(_ datagram: HeartbeatDatagram, bytes: UnsafeRawBufferPointer) -> Bool {
        let signed = UnsafeRawBufferPointer(rebasing: bytes[0..<datagram.encodedSignedLength])
        return withTag(of: signed) { datagram.tagMatches($0) }
    }

    /// A whole signed datagram.
    public func seal(_ datagram: HeartbeatDatagram) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: datagram.encodedSize)
        bytes.withUnsafeMutableBytes { buffer in
            datagram.encodeSignedPart(into: buffer)
            let signed = UnsafeRawBufferPointer(rebasing: buffer[0..<datagram.encodedSignedLength])
            withTag(of: signed) { datagram.encode(into: buffer, tag: $0) }
        }
        return bytes
    }
}
