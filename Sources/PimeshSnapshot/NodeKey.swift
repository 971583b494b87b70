import Crypto
import FoundationEssentials
import Glibc
import PimeshCore
import PimeshSystem

/// The node's Ed25519 signing key (swift-crypto), created at first use in `<data_dir>/node-key`
/// (0600, 64 hex digits) and never rewritten. The node id is derived from the public key, so a
/// receiver can tell which node signed what without a registry of names.
public struct NodeKey: Sendable {
    public let privateKey: Curve25519.Signing.PrivateKey
    public static let fileName = "node-key"

    public init(privateKey: Curve25519.Signing.PrivateKey) {
        self.privateKey = privateKey
    }

    public var publicKeyHex: String {
        Hex.encode(Array(privateKey.publicKey.rawRepresentation))
    }

    public var nodeID: String {
        Self.nodeID(publicKeyHex: publicKeyHex)
    }

    /// `node-` and the first 16 hex digits of SHA-256 of the public key.
    public static func nodeID(publicKeyHex: String) -> String {
        let bytes = Hex.decode(publicKeyHex) ?? []
        return "node-" + String(Hex.encode(Array(SHA256.hash(data: bytes))).prefix(16))
    }

    public struct KeyError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The key in `dataDir` if there is one; never creates it.
    public static func load(dataDir: String) throws -> NodeKey? {
        FileIO.exists(dataDir + "/" + fileName) ? try loadOrCreate(dataDir: dataDir) : nil
    }

    public static func loadOrCreate(dataDir: String) throws -> NodeKey {
        let path = dataDir + "/" + fileName
        if FileIO.exists(path) {
            let text = try FileIO.readText(path: path).split(whereSeparator: { $0 == "\n" || $0 == " " }).first.map(String.init) ?? ""
            guard let bytes = Hex.decode(text), bytes.count == 32,
                let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: bytes)
            else {
                throw KeyError(description: "\(path) does not hold an Ed25519 key (64 hex digits); move it away to make a new one")
            }
            return NodeKey(privateKey: key)
        }
        let key = Curve25519.Signing.PrivateKey()
        try FileIO.writeAtomically(path: path, bytes: Array((Hex.encode(Array(key.rawRepresentation)) + "\n").utf8), mode: 0o600)
        return NodeKey(privateKey: key)
    }

    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        Array(try privateKey.signature(for: message))
    }

    public static func verify(signature: [UInt8], message: [UInt8], publicKeyHex: String) -> Bool {
        guard let bytes = Hex.decode(publicKeyHex), Ed25519Encoding.weakness(of: bytes) == nil,
            signature.count == 64, Ed25519Encoding.weakness(of: Array(signature[0..<32])) == nil,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: bytes)
        else {
            return false
        }
        return key.isValidSignature(signature, for: message)
    }
}
