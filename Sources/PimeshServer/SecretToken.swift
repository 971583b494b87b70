import Glibc
import PimeshCore
import PimeshSystem

/// Bearer tokens kept in 0600 files: the lead's operator and join tokens, the coordinator's
/// operator and enroll tokens. 32 random bytes in hex.
public enum SecretToken {
    public struct TokenError: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// The token in `path` (0600), made first when there is none.
    public static func loadOrCreate(path: String) throws -> String {
        if FileIO.exists(path) {
            let token = String(decoding: try FileIO.read(path: path, limit: 4096), as: UTF8.self).trimmingWhitespace()
            guard token.utf8.count >= 32 else {
                throw TokenError(path: path, reason: "the token is shorter than 32 characters; delete the file to get a new one")
            }
            return token
        }
        let token = random()
        try FileIO.writeAtomically(path: path, bytes: Array((token + "\n").utf8), mode: 0o600)
        return token
    }

    public static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return Hex.encode((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// Compares without an early exit, so the time taken does not reveal a matching prefix.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
