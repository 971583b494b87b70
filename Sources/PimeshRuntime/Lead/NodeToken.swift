import Glibc
import PimeshAgent
import PimeshCore

/// The node's bootstrap token (as k3s keeps its node token): 32 random bytes in hex, in a
/// 0600 file in the data dir. Agents register with it; the CLI reads the API with it.
enum NodeToken {
    static func loadOrCreate(dataDir: String) throws -> String {
        let path = dataDir + "/" + LeadEndpoint.tokenFileName
        if FileIO.exists(path) {
            let token = try LeadDiscovery.token(dataDir: dataDir)
            guard token.utf8.count >= 32 else {
                throw TokenError(path: path, reason: "the token is shorter than 32 characters; delete the file to get a new one")
            }
            return token
        }
        var generator = SystemRandomNumberGenerator()
        let token = Hex.encode((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        try FileIO.writeAtomically(path: path, bytes: Array((token + "\n").utf8), mode: 0o600)
        return token
    }

    struct TokenError: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "\(path): \(reason)" }
    }
}
