import PimeshCore

/// What describes one snapshot: written next to it as `snapshot-<sequence>.json`, signed with
/// the node's Ed25519 key over `signedText`, a fixed list of `key=value` lines (no JSON
/// canonicalisation to agree on).
public struct SnapshotManifest: Codable, Sendable, Equatable {
    public var format = 1
    public var nodeID: String
    public var sequence: UInt64
    public var createdAtMs: Int64
    public var schemaVersion: Int
    /// The compressed file's name, in the same directory.
    public var file: String
    public var rawBytes: UInt64
    public var compressedBytes: UInt64
    public var rawSHA256: String
    public var compressedSHA256: String
    /// The node's impedance score (0 best … 1000 worst) when the lead took it; nil from the CLI.
    public var nodeScore: Int?
    /// Ed25519 public key, 64 hex digits.
    public var publicKey: String
    /// The audit log's newest signed head when the snapshot was taken (docs/audit.md): the
    /// coordinator keeps it, so that a chain cut or rewritten on the node shows against it.
    public var auditHead: AuditHead?
    /// Ed25519 signature over `signedText`, 128 hex digits.
    public var signature: String

    enum CodingKeys: String, CodingKey {
        case format, sequence, file, signature
        case nodeID = "nodeId"
        case createdAtMs, schemaVersion, rawBytes, compressedBytes
        case rawSHA256 = "rawSha256"
        case compressedSHA256 = "compressedSha256"
        case publicKey, nodeScore, auditHead
    }

    public var signedText: [UInt8] {
        Array(
            """
            pimesh-snapshot-v\(format)
            node_id=\(nodeID)
            sequence=\(sequence)
            created_at_ms=\(createdAtMs)
            schema_version=\(schemaVersion)
            file=\(file)
            raw_bytes=\(rawBytes)
            compressed_bytes=\(compressedBytes)
            raw_sha256=\(rawSHA256)
            compressed_sha256=\(compressedSHA256)
            node_score=\(nodeScore.map(String.init) ?? "")
            public_key=\(publicKey)

            """.utf8) + (auditHead.map { Array("audit_head=\($0.seq) \($0.sha256) \($0.atMs) \($0.signature)\n".utf8) } ?? [])
    }

    public static func fileName(sequence: UInt64) -> String {
        "snapshot-" + String(sequence).leftPadded(to: 10) + ".db.lz4"
    }

    public static func manifestName(sequence: UInt64) -> String {
        "snapshot-" + String(sequence).leftPadded(to: 10) + ".json"
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
