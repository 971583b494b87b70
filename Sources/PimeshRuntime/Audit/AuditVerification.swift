import PimeshAgent
import PimeshCore
import PimeshFleetIndex
import PimeshSnapshot
import PimeshStore
import PimeshSystem

/// `pimesh audit verify`: walks a data dir's audit chain and every signed head it can get
/// (its own, and those kept upstream), and names the first bad row. Opens the database
/// read-only and trusts nothing in it (docs/audit.md).
public struct AuditVerification: Sendable {
    public struct Report: Codable, Sendable {
        public var ok: Bool
        public var rows: Int
        public var firstSeq: Int64?
        public var lastSeq: Int64?
        public var prunedThrough: Int64?
        public var localHeads: Int
        public var upstreamHeads: Int
        public var nodeKey: String?
        public var problems: [String]
        /// The first bad row, for scripts.
        public var firstBadSeq: Int64?
        /// Restores from a snapshot found in the chain. Heads signed before a restore, past the
        /// snapshot's own head, belong to the chain the restore replaced: against them the
        /// restored chain shows a head mismatch or a cut, which these explain.
        public var restores: [String]
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `upstream`: heads kept off the node (the coordinator's, or a file of them), with the
    /// public key they were kept for.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public static func run(databasePath: String, sinceSeq: Int64? = nil, upstream: AuditHeadList? = nil) throws -> Report {
        guard FileIO.exists(databasePath) else { throw Failure(description: "\(databasePath) does not exist") }
        let database = try Database(path: databasePath, readOnly: true)
        let store = AuditStore(database: database)
        var problems: [String] = []
        let pruned = try store.anchor()
        let nodeKey = try nodeKey(in: store)
        if nodeKey == nil {
            problems.append("no genesis or pruned_through row names the node key, and no node-key file is readable: heads cannot be checked")
        }
        if let upstream, let nodeKey, upstream.publicKey != nodeKey {
            problems.append("the upstream heads are for key \(upstream.publicKey), the chain's genesis names \(nodeKey)")
        }
        var anchor = pruned
        if let sinceSeq, sinceSeq > (pruned?.seq ?? 0) + 1 {
            guard let before = try store.record(seq: sinceSeq - 1) else {
                throw Failure(description: "--since \(sinceSeq): row \(sinceSeq - 1) is not in the log")
            }
            anchor = AuditVerifier.Anchor(seq: before.seq, sha256: before.sha256)
        }
        let localHeads = try store.heads()
        let upstreamHeads = upstream?.heads ?? []
        let heads = localHeads + upstreamHeads
        var walk = AuditVerifier.Walk(anchor: anchor, headSeqs: Set(heads.map(\.seq)), hash: AuditLog.sha256)
        var first: Int64?
        var last: Int64?
        var restores: [String] = []
        try store.forEachRecord(from: (anchor?.seq ?? 0) + 1) { record in
            if first == nil { first = record.seq }
            last = record.seq
            if record.kind == "snapshot_restored" {
                let fields = Dictionary(AuditBody.parse(record.body) ?? [], uniquingKeysWith: { (first: String, _: String) in first })
                restores.append(
                    "row \(record.seq): \(record.actor) restored snapshot \(fields["snapshot_sequence"] ?? "?"), "
                        + "whose audit head is row \(fields["audit_head_seq"] ?? "?")"
                        + (fields["rollback_of"].map { ", after release \($0) was rolled back" } ?? ""))
            }
            walk.feed(record)
        }
        let findings = walk.finish(heads: heads) { head in
            guard let nodeKey, let signature = Hex.decode(head.signature) else { return false }
            return NodeKey.verify(
                signature: signature, message: AuditHead.signedMessage(seq: head.seq, sha256: head.sha256), publicKeyHex: nodeKey)
        }
        problems = findings.map { finding in
            let from = upstreamHeads.contains { $0.seq == finding.seq } && !localHeads.contains { $0.seq == finding.seq } ? " [upstream head]" : ""
            return finding.description + from
        } + problems
        return Report(
            ok: problems.isEmpty, rows: walk.rows, firstSeq: first, lastSeq: last, prunedThrough: pruned?.seq, localHeads: localHeads.count,
            upstreamHeads: upstreamHeads.count, nodeKey: nodeKey, problems: problems, firstBadSeq: findings.first?.seq,
            restores: restores)
    }

    /// Heads from `--heads-from`: a coordinator's directory (its index is read directly) or a
    /// file holding `GET /v1/nodes/{node}/audit-heads` of a coordinator.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    public static func upstreamHeads(from source: String, nodeKey: String?) throws -> AuditHeadList {
        if FileIO.exists(source + "/coordinator.db") {
            let database = try Database(path: source + "/coordinator.db", migrations: CoordinatorStore.migrations, readOnly: true)
            guard let nodeKey else { throw Failure(description: "the chain names no node key to look up in \(source)") }
            let nodeID = NodeKey.nodeID(publicKeyHex: nodeKey)
            let store = CoordinatorStore(database: database)
            guard let key = try store.publicKey(of: nodeID) else {
                throw Failure(description: "the coordinator in \(source) has not enrolled \(nodeID)")
            }
            return AuditHeadList(nodeID: nodeID, publicKey: key, heads: try store.auditHeads(of: nodeID))
        }
        do {
            return try APICoding.decode(AuditHeadList.self, from: try FileIO.read(path: source))
        } catch let error as FileIO.Failure {
            throw Failure(description: "--heads-from \(source): \(error)")
        } catch {
            throw Failure(description: "--heads-from \(source): not a coordinator directory nor a JSON list of heads (\(error))")
        }
    }

    /// The node key the chain names, for looking up its heads upstream.
    public static func nodeKey(databasePath: String) throws -> String? {
        try nodeKey(in: AuditStore(database: try Database(path: databasePath, readOnly: true)))
    }

    /// Named by the genesis row and again by every pruning row; when both are gone (a cut
    /// log), the node key file beside the database names it.
    static func nodeKey(in store: AuditStore) throws -> String? {
        let keyRow = try store.record(seq: 1) ?? store.records(.init(kind: "pruned_through"), limit: 1).first
        if let named = keyRow.flatMap({ AuditBody.parse($0.body) })?.first(where: { $0.0 == "node_key" })?.1 { return named }
        let dataDir = String(store.database.path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/"))
        return try? NodeKey.load(dataDir: dataDir.isEmpty ? "." : dataDir)?.publicKeyHex
    }
}
