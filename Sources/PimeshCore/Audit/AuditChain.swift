/// The chain rule of the audit log, in one place (docs/audit.md shows the same rule as a few
/// lines of Python, and a test runs them against this code).
///
/// A row's `sha256` is SHA-256 of `pimesh-audit-v1\n` followed by, for each field in the order
/// seq, wall_ms, mono_ms, boot_id, clock_synced (0 or 1), actor, kind, subject, body,
/// prev_sha256: the byte length of its UTF-8 text, `:`, the text, `\n`. Length prefixes make the
/// encoding unambiguous whatever a field holds (a body with newlines cannot pose as two fields)
/// and need no escaping rules to agree on. The first row's `prev_sha256` is 64 zeros.
///
/// The core has no SHA-256 of its own (it imports nothing): the shell passes swift-crypto's.
public enum AuditChain {
    public typealias Hash = ([UInt8]) -> [UInt8]

    public static let genesisPrev = String(repeating: "0", count: 64)
    public static let genesisKind = "genesis"
    static let prefix = Array("pimesh-audit-v1\n".utf8)

    public static func canonicalBytes(
        seq: Int64, wallMs: Int64, monoMs: Int64, bootID: String, clockSynced: Bool, actor: String, kind: String, subject: String,
        body: String, prevSHA256: String
    ) -> [UInt8] {
        var bytes = prefix
        for field in [
            String(seq), String(wallMs), String(monoMs), bootID, clockSynced ? "1" : "0", actor, kind, subject, body, prevSHA256,
        ] {
            let utf8 = Array(field.utf8)
            bytes += Array(String(utf8.count).utf8)
            bytes.append(UInt8(ascii: ":"))
            bytes += utf8
            bytes.append(UInt8(ascii: "\n"))
        }
        return bytes
    }

    public static func digest(of record: AuditRecord, hash: Hash) -> String {
        Hex.encode(
            hash(
                canonicalBytes(
                    seq: record.seq, wallMs: record.wallMs, monoMs: record.monoMs, bootID: record.bootID,
                    clockSynced: record.clockSynced, actor: record.actor, kind: record.kind, subject: record.subject,
                    body: record.body, prevSHA256: record.prevSHA256)))
    }
}

/// The end of the chain as the writer knows it; appending is the only way forward.
public struct AuditTip: Sendable, Equatable {
    public var seq: Int64
    public var sha256: String

    /// Before the genesis row.
    public static let empty = AuditTip(seq: 0, sha256: AuditChain.genesisPrev)

    public init(seq: Int64, sha256: String) {
        self.seq = seq
        self.sha256 = sha256
    }

    /// The next row, chained to this tip; the tip moves to it.
    public mutating func append(
        _ entry: AuditEntry, wallMs: Int64, monoMs: Int64, bootID: String, clockSynced: Bool, hash: AuditChain.Hash
    ) -> AuditRecord {
        var record = AuditRecord(
            seq: seq + 1, wallMs: wallMs, monoMs: monoMs, bootID: bootID, clockSynced: clockSynced, actor: entry.actor,
            kind: entry.kind, subject: entry.subject, body: entry.body, prevSHA256: sha256, sha256: "")
        record.sha256 = AuditChain.digest(of: record, hash: hash)
        self = AuditTip(seq: record.seq, sha256: record.sha256)
        return record
    }
}

/// A signed statement "the chain had this row as row `seq`": kept by the lead, carried in
/// snapshot manifests and kept by the coordinator, so that a chain cut or re-chained after it
/// no longer matches (Trillian's signed tree heads, for a chain instead of a tree).
public struct AuditHead: Sendable, Equatable, Codable {
    public var seq: Int64
    public var sha256: String
    public var atMs: Int64
    /// Ed25519 over `signedMessage`, 128 hex digits.
    public var signature: String

    enum CodingKeys: String, CodingKey {
        case seq, atMs, signature
        case sha256 = "sha256"
    }

    public init(seq: Int64, sha256: String, atMs: Int64, signature: String) {
        self.seq = seq
        self.sha256 = sha256
        self.atMs = atMs
        self.signature = signature
    }

    /// The bytes the node key signs: the time is not in it, so a head means only "row seq was this".
    public static func signedMessage(seq: Int64, sha256: String) -> [UInt8] {
        Array("pimesh-audit-head-v1\n\(seq)\n\(sha256)\n".utf8)
    }
}

/// How often the lead signs a head (`audit.head_every_rows`), besides at every snapshot.
public enum AuditHeadPolicy {
    public static let defaultEveryRows: Int64 = 256

    public static func signsHead(after seq: Int64, everyRows: Int64) -> Bool {
        everyRows > 0 && seq % everyRows == 0
    }
}
