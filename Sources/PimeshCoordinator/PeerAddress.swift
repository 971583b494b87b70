import Glibc
import HTTPTypes

/// What a peer is counted as when nothing else says who it is (an incident before its
/// signature is checked): its address, an IPv6 one by its /64 (one host is handed a whole
/// /64, and could take every slot one address at a time), and, from a trusted TLS proxy, the
/// client address the proxy appended to X-Forwarded-For.
enum PeerAddress {
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!

    static func key(peer: String, forwardedFor values: [String], trustedProxy: String?) -> String {
        var address = peer
        // The proxy appends the address it saw last; earlier entries are the client's to write.
        if let trustedProxy, peer == trustedProxy,
            let last = values.last?.split(separator: ",").last?.filter({ $0 != " " && $0 != "\t" }), !last.isEmpty
        {
            address = String(last)
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard address.contains(":"), inet_pton(AF_INET6, address, &bytes) == 1 else { return address }
        // An IPv4-mapped address is its IPv4 one.
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        return bytes[0..<8].map { String($0, radix: 16) }.joined(separator: ":") + "::/64"
    }
}
