import Glibc
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshSystem
import Synchronization

/// The lead's two bearer tokens (issue 12, as k3s keeps a server token and an agent token):
/// the **operator** token (`node-token`) may do everything; the **join** token (`join-token`)
/// may only register attached agents. 32 random bytes in hex, each in its own 0600 file in the
/// data dir, rotated by `pimesh token rotate join|operator`. Agents never hold either: each
/// has a credential of its own (AgentAPICredential).
final class LeadTokens: Sendable {
    enum Kind: String, CaseIterable, Sendable {
        case `operator`
        case join

        var fileName: String {
            switch self {
            case .operator: LeadEndpoint.tokenFileName
            case .join: LeadEndpoint.joinTokenFileName
            }
        }
    }

    let dataDir: String
    private let tokens: Mutex<[Kind: [UInt8]]>

    init(dataDir: String) throws {
        self.dataDir = dataDir
        var loaded: [Kind: [UInt8]] = [:]
        for kind in Kind.allCases {
            loaded[kind] = Array(try SecretToken.loadOrCreate(path: dataDir + "/" + kind.fileName).utf8)
        }
        tokens = Mutex(loaded)
    }

    /// Which token `presented` is, if any; compared in constant time against each.
    func kind(of presented: some Collection<UInt8>) -> Kind? {
        let bytes = Array(presented)
        return tokens.withLock { tokens in
            Kind.allCases.first { kind in tokens[kind].map { SecretToken.constantTimeEqual($0, bytes) } ?? false }
        }
    }

    /// A new token of `kind`, written (temp + fsync + rename, 0600) before it replaces the old
    /// one, so the file and the lead never disagree after a crash.
    func rotate(_ kind: Kind) throws {
        let token = SecretToken.random()
        try FileIO.writeAtomically(path: dataDir + "/" + kind.fileName, bytes: Array((token + "\n").utf8), mode: 0o600)
        tokens.withLock { $0[kind] = Array(token.utf8) }
    }
}

/// `pimesh token init`: the package's postinst makes both tokens before the lead first starts,
/// as the lead's user, so that an operator can read `node-token` right after installing.
public enum LeadTokenFiles {
    public struct Prepared: Sendable, Codable {
        public var kind: String
        public var path: String
        public var created: Bool
    }

    /// Makes the data dir (0700) and each token that is missing (0600, the caller's own); an
    /// existing token is kept as it is, so running it again changes nothing.
    public static func prepare(dataDir: String) throws -> [Prepared] {
        try FileIO.makeDirectories(dataDir, mode: 0o700)
        return try LeadTokens.Kind.allCases.map { kind in
            let path = dataDir + "/" + kind.fileName
            let existed = FileIO.exists(path)
            _ = try SecretToken.loadOrCreate(path: path)
            return Prepared(kind: kind.rawValue, path: path, created: !existed)
        }
    }
}
