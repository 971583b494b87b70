import Crypto
import PimeshCore

/// The heartbeat tag: HMAC-SHA256 under the agent's secret over the signed part, truncated to
/// 16 bytes (RFC 2104 §5 allows truncation to half the hash). Agents sign with it, the lead checks with it.
// The hash states are copied before each use and never mutated in place, so sharing them
// across the lead's threads is safe even where swift-crypto does not mark its parts Sendable.
public struct HeartbeatTag: @unchecked Sendable {
    /// SHA-256 after absorbing the padded key xor ipad, and after the padded key xor opad
    /// (RFC 2104 §2), computed once at registration. A tag then costs two compressions (the
    /// 48 signed bytes, then the inner digest) through swift-crypto's concrete SHA256, where
    /// its generic `HMAC.update(data:)` spent ten times that resolving type metadata: at 4,000
    /// heartbeats a second it was a tenth of the lead's CPU (docs/benchmarks.md).
    private let inner: SHA256
    private let outer: SHA256

    public init(secret: [UInt8]) {
        let blockSize = SHA256.blockByteCount
        var key = secret.count > blockSize ? Array(SHA256.hash(data: secret)) : secret
        key += [UInt8](repeating: 0, count: blockSize - key.count)
        var inner = SHA256()
        inner.update(data: key.map { $0 ^ 0x36 })
        var outer = SHA256()
        outer.update(data: key.map { $0 ^ 0x5c })
        self.inner = inner
        self.outer = outer
    }

    /// Calls `body` with the full 32-byte tag of `signed` (the first 48 bytes of a datagram).
    public func withTag<R>(of signed: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var innerHash = inner
        innerHash.update(bufferPointer: signed)
        var outerHash = outer
        innerHash.finalize().withUnsafeBytes { outerHash.update(bufferPointer: $0) }
        return outerHash.finalize().withUnsafeBytes(body)
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
