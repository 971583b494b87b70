/// Walks an audit chain and its signed heads and says what is wrong, row by row
/// (`pimesh audit verify`). It trusts nothing in the database: not the triggers that refuse
/// UPDATE and DELETE, not the stored hashes.
public enum AuditVerifier {
    public enum Problem: Sendable, Equatable {
        /// The row's content does not hash to its `sha256`: the row was changed.
        case hash
        /// The row's `prev_sha256` is not the previous row's `sha256`: a row before it was
        /// changed, removed or put elsewhere.
        case link
        /// This row is missing: the row in its place says `nextSeq` (rows deleted, or its seq edited).
        case missing(nextSeq: Int64)
        /// This row's number came already or is below its place: a row inserted or moved.
        case outOfOrder(expected: Int64)
        /// Row 1 is not the genesis row, or a genesis row appears later.
        case genesis
        /// A signed head names another hash for this row: the chain was rewritten and re-chained.
        case headMismatch(headSHA256: String)
        /// A signed head covers rows that are gone: the tail was cut.
        case cut(lastSeq: Int64)
        /// A head's signature is not the node key's.
        case signature
        /// The row that `pruned_through` points to disagrees with the anchor kept for pruning.
        case anchor
    }

    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var seq: Int64
        public var problem: Problem

        public init(seq: Int64, problem: Problem) {
            self.seq = seq
            self.problem = problem
        }

        public var description: String {
            switch problem {
            case .hash: "row \(seq): its content does not hash to its sha256 (the row was changed)"
            case .link: "row \(seq): prev_sha256 is not row \(seq - 1)'s sha256 (a row before it was changed, removed or moved)"
            case .missing(let next): "row \(seq): missing (the row in its place says seq \(next)): rows were deleted or renumbered"
            case .outOfOrder(let expected): "row \(seq): out of order (row \(expected) was expected in its place): rows were moved or inserted"
            case .genesis: "row \(seq): the chain must start with exactly one genesis row"
            case .headMismatch(let head): "row \(seq): a signed head says its sha256 is \(head) (the chain was rewritten after the head was signed)"
            case .cut(let last): "row \(seq): a signed head covers it but the chain ends at row \(last) (the tail was cut)"
            case .signature: "head at row \(seq): the signature is not the node key's"
            case .anchor: "row \(seq): the pruning anchor is not a signed head of the node key (rows before it may have been deleted)"
            }
        }
    }

    /// Where a pruned chain starts: the last pruned row's seq and sha256.
    public struct Anchor: Sendable, Equatable {
        public var seq: Int64
        public var sha256: String

        public init(seq: Int64, sha256: String) {
            self.seq = seq
            self.sha256 = sha256
        }
    }

    /// `records` in the order read (by seq); `signatureValid` checks one head's signature.
    /// Findings are sorted by row, so the first names the first bad row.
    public static func verify(
        _ records: [AuditRecord], anchor: Anchor? = nil, heads: [AuditHead] = [], hash: @escaping AuditChain.Hash,
        signatureValid: (AuditHead) -> Bool
    ) -> [Finding] {
        var walk = Walk(anchor: anchor, headSeqs: Set(heads.map(\.seq)), hash: hash)
        for record in records { walk.feed(record) }
        return walk.finish(heads: heads, signatureValid: signatureValid)
    }

    /// The same check one row at a time, so a long log is verified in pages.
    public struct Walk {
        private let anchor: Anchor?
        private let headSeqs: Set<Int64>
        private let hash: AuditChain.Hash
        private var expectedSeq: Int64
        private var expectedPrev: String
        private var shaAtHeads: [Int64: String] = [:]
        private var lastSeq: Int64
        /// Each finding with the place in the walk where it was found, for ordering.
        private var findings: [(Int64, Finding)] = []
        /// The highest seq a row claimed.
        private var lastStoredSeq: Int64
        public private(set) var rows = 0

        public init(anchor: Anchor?, headSeqs: Set<Int64>, hash: @escaping AuditChain.Hash) {
            self.anchor = anchor
            self.headSeqs = headSeqs
            self.hash = hash
            expectedSeq = (anchor?.seq ?? 0) + 1
            expectedPrev = anchor?.sha256 ?? AuditChain.genesisPrev
            lastSeq = anchor?.seq ?? 0
            lastStoredSeq = lastSeq
        }

        public mutating func feed(_ record: AuditRecord) {
            rows += 1
            let position = lastSeq + 1
            // A row's own content first: an edited seq field is then named by the row's place,
            // not by the number the edit wrote.
            if AuditChain.digest(of: record, hash: hash) != record.sha256 {
                found(position, Finding(seq: position, problem: .hash))
            }
            if record.seq > expectedSeq {
                // Rows are missing here: name the first missing one.
                found(position, Finding(seq: expectedSeq, problem: .missing(nextSeq: record.seq)))
            } else if record.seq < expectedSeq {
                // A number seen already: an inserted or moved row.
                found(position, Finding(seq: record.seq, problem: .outOfOrder(expected: expectedSeq)))
            } else if record.prevSHA256 != expectedPrev {
                found(position, Finding(seq: record.seq, problem: .link))
            }
            if (record.seq == 1) != (record.kind == AuditChain.genesisKind) {
                found(position, Finding(seq: record.seq, problem: .genesis))
            }
            if headSeqs.contains(record.seq) && shaAtHeads[record.seq] == nil { shaAtHeads[record.seq] = record.sha256 }
            // Go on from this row as stored, so that one bad row is reported once, not with
            // every row after it.
            expectedSeq = max(expectedSeq, record.seq) + 1
            expectedPrev = record.sha256
            lastSeq = position
            lastStoredSeq = max(lastStoredSeq, record.seq)
        }

        private mutating func found(_ position: Int64, _ finding: Finding) {
            findings.append((position, finding))
        }

        /// Findings in the order of the rows they concern: the first names the first bad row.
        public func finish(heads: [AuditHead], signatureValid: (AuditHead) -> Bool) -> [Finding] {
            var findings = findings
            for head in heads {
                if !signatureValid(head) {
                    findings.append((head.seq, Finding(seq: head.seq, problem: .signature)))
                    continue
                }
                if let anchor, head.seq <= anchor.seq {
                    if head.seq == anchor.seq && head.sha256 != anchor.sha256 {
                        findings.append((head.seq, Finding(seq: head.seq, problem: .anchor)))
                    }
                    continue
                }
                if let sha = shaAtHeads[head.seq] {
                    if sha != head.sha256 { findings.append((head.seq, Finding(seq: head.seq, problem: .headMismatch(headSHA256: head.sha256)))) }
                } else if head.seq > lastStoredSeq {
                    findings.append((head.seq, Finding(seq: head.seq, problem: .cut(lastSeq: lastStoredSeq))))
                }
                // A head on a row missing in the middle is already reported as a gap.
            }
            // A pruned chain starts at its anchor; only a signed head makes the anchor more than a
            // claim (otherwise deleting the first rows and writing an anchor would pass).
            if let anchor, !heads.contains(where: { $0.seq == anchor.seq && $0.sha256 == anchor.sha256 && signatureValid($0) }) {
                findings.append((anchor.seq, Finding(seq: anchor.seq, problem: .anchor)))
            }
            // Stable: findings about one place keep the order they were found in.
            return findings.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element.1)
        }
    }
}
