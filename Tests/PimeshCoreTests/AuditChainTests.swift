import Crypto
import PimeshCore
import Testing

/// The audit chain rule and its verifier against every kind of tampering the issue names
/// (docs/audit.md, "What verification finds").
struct AuditChainTests {
    static func sha256(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
    static let key = Curve25519.Signing.PrivateKey()

    static func sign(_ record: AuditRecord) -> AuditHead {
        let signature = try! key.signature(for: AuditHead.signedMessage(seq: record.seq, sha256: record.sha256))
        return AuditHead(seq: record.seq, sha256: record.sha256, atMs: record.wallMs, signature: Hex.encode(Array(signature)))
    }

    static func signatureValid(_ head: AuditHead) -> Bool {
        guard let signature = Hex.decode(head.signature) else { return false }
        return key.publicKey.isValidSignature(signature, for: AuditHead.signedMessage(seq: head.seq, sha256: head.sha256))
    }

    /// 200 rows with a genesis row, bodies with spaces and newlines, two boots and a clock that
    /// synchronised halfway; heads every 50 rows.
    static let chain: [AuditRecord] = {
        var tip = AuditTip.empty
        var rows: [AuditRecord] = []
        for index in 0..<200 {
            let entry =
                index == 0
                ? AuditEntry(actor: "lead", kind: AuditChain.genesisKind, subject: "node-1", body: AuditBody.canonical(["node_key": "ab"]))
                : AuditEntry(
                    actor: index % 3 == 0 ? "operator (uid 1000)" : "lead", kind: index % 2 == 0 ? "heal" : "restarted",
                    subject: "agent-\(index % 7)", body: AuditBody.canonical(["detail": "line one\nline two = \(index)", "phase": "intent"]))
            rows.append(
                tip.append(
                    entry, wallMs: 1_790_000_000_000 + Int64(index) * 1000, monoMs: Int64(index) * 1000 + 5,
                    bootID: index < 120 ? "boot-a" : "boot-b", clockSynced: index >= 100, hash: sha256))
        }
        return rows
    }()
    static let heads = chain.filter { $0.seq % 50 == 0 }.map(sign)

    static func verify(_ rows: [AuditRecord], heads: [AuditHead] = heads) -> [AuditVerifier.Finding] {
        AuditVerifier.verify(rows, heads: heads, hash: sha256, signatureValid: signatureValid)
    }

    @Test func theUntouchedChainVerifies() {
        #expect(Self.verify(Self.chain).isEmpty)
        #expect(Self.chain[0].prevSHA256 == String(repeating: "0", count: 64))
        #expect(Self.chain[1].prevSHA256 == Self.chain[0].sha256)
    }

    /// Every byte of every field of every row, one at a time. The verifier runs from a copy of
    /// its state before the row (rows before an edit cannot yield a finding about a later row),
    /// over the edited row and the one after it, and with every head: the first finding is
    /// the edited row every time.
    @Test func flippingAnyByteOfAnyRowIsNamedAtThatRow() {
        var before = AuditVerifier.Walk(anchor: nil, headSeqs: Set(Self.heads.map(\.seq)), hash: Self.sha256)
        var checked = 0
        for (index, row) in Self.chain.enumerated() {
            for edited in Self.everyByteFlipped(row) {
                var walk = before
                walk.feed(edited)
                if index + 1 < Self.chain.count { walk.feed(Self.chain[index + 1]) }
                // The heads are untouched here; their signatures are checked in the tests below.
                let findings = walk.finish(heads: Self.heads) { Self.heads.contains($0) }
                #expect(findings.first?.seq == row.seq, "row \(row.seq) edited as \(edited)")
                checked += 1
            }
            before.feed(row)
        }
        #expect(checked > 200 * 150)
    }

    static func everyByteFlipped(_ row: AuditRecord) -> [AuditRecord] {
        var out: [AuditRecord] = []
        func flipped(_ value: Int64) -> [Int64] { (0..<8).map { value ^ (Int64(1) << ($0 * 8)) } }
        func flipped(_ text: String) -> [String] {
            let bytes = Array(text.utf8)
            return bytes.indices.map { i in
                var copy = bytes
                copy[i] ^= 0x01
                return String(decoding: copy, as: UTF8.self)
            }
        }
        for v in flipped(row.seq) { var r = row; r.seq = v; out.append(r) }
        for v in flipped(row.wallMs) { var r = row; r.wallMs = v; out.append(r) }
        for v in flipped(row.monoMs) { var r = row; r.monoMs = v; out.append(r) }
        do { var r = row; r.clockSynced.toggle(); out.append(r) }
        for keyPath in [\AuditRecord.bootID, \.actor, \.kind, \.subject, \.body, \.prevSHA256, \.sha256] {
            for v in flipped(row[keyPath: keyPath]) { var r = row; r[keyPath: keyPath] = v; out.append(r) }
        }
        return out
    }

    @Test func deletingAnyRowIsNamed() {
        for index in Self.chain.indices {
            var rows = Self.chain
            rows.remove(at: index)
            let first = Self.verify(rows).first
            if index == Self.chain.count - 1 {
                // The last row is missing: only the head on it tells.
                #expect(first == .init(seq: 200, problem: .cut(lastSeq: 199)))
            } else {
                #expect(first == .init(seq: Int64(index + 1), problem: .missing(nextSeq: Int64(index + 2))), "row \(index + 1) deleted")
            }
        }
    }

    @Test func swappingNeighboursIsNamedAtTheFirstOfThem() {
        for index in 0..<(Self.chain.count - 1) {
            var rows = Self.chain
            rows.swapAt(index, index + 1)
            #expect(Self.verify(rows).first?.seq == Int64(index + 1), "rows \(index + 1) and \(index + 2) swapped")
        }
    }

    /// A forged row, correctly hashed and linked to the row before it, put in anywhere.
    @Test func anInsertedRowIsNamed() {
        for index in 1..<Self.chain.count {
            var tip = AuditTip(seq: Self.chain[index - 1].seq, sha256: Self.chain[index - 1].sha256)
            let forged = tip.append(
                AuditEntry(actor: "lead", kind: "heal", subject: "agent-x", body: "phase=intent"), wallMs: 1, monoMs: 1, bootID: "boot-a",
                clockSynced: true, hash: Self.sha256)
            var rows = Self.chain
            rows.insert(forged, at: index)
            #expect(Self.verify(rows).first?.seq == forged.seq, "forged row inserted before row \(index + 1)")
        }
    }

    @Test func aTailCutAfterASignedHeadIsNamedByTheHead() {
        let rows = Array(Self.chain.prefix(160))
        #expect(Self.verify(rows) == [.init(seq: 200, problem: .cut(lastSeq: 160))])
        // Without the head the cut chain is a valid prefix: why heads are kept upstream.
        #expect(Self.verify(rows, heads: Array(Self.heads.prefix(3))).isEmpty)
    }

    @Test func aChainRewrittenAndRechainedIsCaughtByTheNextHead() {
        var tip = AuditTip(seq: Self.chain[118].seq, sha256: Self.chain[118].sha256)
        var rows = Array(Self.chain.prefix(119))
        for row in Self.chain[119...] {
            var entry = AuditEntry(actor: row.actor, kind: row.kind, subject: row.subject, body: row.body)
            if row.seq == 120 { entry.body = "phase=intent" }
            rows.append(
                tip.append(entry, wallMs: row.wallMs, monoMs: row.monoMs, bootID: row.bootID, clockSynced: row.clockSynced, hash: Self.sha256))
        }
        let findings = Self.verify(rows)
        #expect(findings.first == .init(seq: 150, problem: .headMismatch(headSHA256: Self.chain[149].sha256)))
    }

    @Test func aForgedHeadIsNamed() {
        var forged = Self.heads[1]
        forged.sha256 = Self.chain[100].sha256
        #expect(Self.verify(Self.chain, heads: Self.heads + [forged]).contains(.init(seq: 100, problem: .signature)))
    }

    @Test func aPrunedChainVerifiesFromItsAnchor() {
        let rest = Array(Self.chain[100...])
        let anchor = AuditVerifier.Anchor(seq: 100, sha256: Self.chain[99].sha256)
        #expect(AuditVerifier.verify(rest, anchor: anchor, heads: Self.heads, hash: Self.sha256, signatureValid: Self.signatureValid).isEmpty)
        let wrong = AuditVerifier.Anchor(seq: 100, sha256: Self.chain[98].sha256)
        let findings = AuditVerifier.verify(rest, anchor: wrong, heads: Self.heads, hash: Self.sha256, signatureValid: Self.signatureValid)
        #expect(findings.first == .init(seq: 100, problem: .anchor))
        #expect(findings.contains(.init(seq: 101, problem: .link)))
        // Rows deleted from the front behind an anchor that no signed head backs.
        let unsigned = AuditVerifier.Anchor(seq: 120, sha256: Self.chain[119].sha256)
        let front = AuditVerifier.verify(
            Array(Self.chain[120...]), anchor: unsigned, heads: Self.heads, hash: Self.sha256, signatureValid: Self.signatureValid)
        #expect(front == [.init(seq: 120, problem: .anchor)])
    }

    @Test func bodiesAreCanonicalAndRoundTrip() {
        let body = AuditBody.canonical(["z": "last", "a": "two words", "m": "x=y\n%"])
        #expect(body == "a=two%20words m=x%3Dy%0A%25 z=last")
        #expect(AuditBody.parse(body)?.map { "\($0.0)=\($0.1)" } == ["a=two words", "m=x=y\n%", "z=last"])
        #expect(AuditBody.parse("a=%4") == nil)
        #expect(AuditBody.parse("no-equals") == nil)
    }

    @Test func headsAreSignedEveryNRows() {
        #expect(AuditHeadPolicy.signsHead(after: 256, everyRows: 256))
        #expect(!AuditHeadPolicy.signsHead(after: 255, everyRows: 256))
        #expect(AuditHeadPolicy.signsHead(after: 3, everyRows: 1))
    }
}
