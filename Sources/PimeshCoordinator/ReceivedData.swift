import PimeshCore
import PimeshFleetIndex
import PimeshSnapshot
import PimeshStore

// What only the coordinator does with what nodes send and with its index: kept out of the
// modules the Pi's `pimesh` links (the 25 MB budget counts their public code).

extension SnapshotManifest {
    /// The first field of a manifest received from elsewhere that no node writes, as (JSON
    /// field, why): the coordinator sorts and subtracts its times.
    var implausibleField: (field: String, reason: String)? {
        if !UTCTime.plausibleEpochMs.contains(createdAtMs) {
            return ("created_at_ms", "\(createdAtMs) is not a time from 1970 to 9999 in epoch milliseconds")
        }
        if let head = auditHead, !UTCTime.plausibleEpochMs.contains(head.atMs) {
            return ("audit_head.at_ms", "\(head.atMs) is not a time from 1970 to 9999 in epoch milliseconds")
        }
        if let head = auditHead, head.seq < 0 { return ("audit_head.seq", "\(head.seq) is below 0") }
        if let score = nodeScore, !(0...1000).contains(score) { return ("node_score", "\(score) is not a score from 0 to 1000") }
        return nil
    }

    /// The sequence in a name `fileName` or `manifestName` made; nil for any other name.
    static func sequence(inName name: String) -> UInt64? {
        guard name.hasPrefix("snapshot-") else { return nil }
        let rest = name.dropFirst("snapshot-".count)
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        guard digits.count >= 10, let sequence = UInt64(digits) else { return nil }
        let suffix = rest.dropFirst(digits.count)
        return suffix == ".db.lz4" || suffix == ".json" ? sequence : nil
    }
}

extension Incident {
    /// Counts (`timeline_dropped`, `escalation`, `recurrences`) of an incident from elsewhere
    /// are at most this: a lead's never come near it, and sums of them stay far from overflow.
    static let maxReceivedCount = 1_000_000_000

    /// The first field of an incident received from elsewhere (a node's, at the coordinator)
    /// that no lead writes, as (JSON field, why): its times are sorted, compared and subtracted,
    /// its counts added up.
    var implausibleField: (field: String, reason: String)? {
        let times: [(String, Int64?)] =
            [
                ("opened_ms", openedMs), ("last_update_ms", lastUpdateMs), ("acknowledged_ms", acknowledgedMs),
                ("first_response_ms", firstResponseMs), ("root_cause_ms", rootCauseMs), ("mitigated_ms", mitigatedMs),
                ("resolved_ms", resolvedMs), ("quiet_since_ms", quietSinceMs),
            ]
            + timeline.enumerated().map { ("timeline[\($0.offset)].at_ms", $0.element.atMs) }
            + (playbookRuns ?? []).enumerated().map { ("playbook_runs[\($0.offset)].started_ms", $0.element.startedMs) }
        for (field, value) in times {
            if let value, !UTCTime.plausibleEpochMs.contains(value) {
                return (field, "\(value) is not a time from 1970 to 9999 in epoch milliseconds")
            }
        }
        for (field, value) in [("timeline_dropped", timelineDropped), ("escalation", escalation), ("recurrences", recurrences)]
        where !(0...Self.maxReceivedCount).contains(value) {
            return (field, "\(value) is not a count from 0 to \(Self.maxReceivedCount)")
        }
        return nil
    }
}

extension CoordinatorStore {
    /// Audit heads kept per node, newest by sequence: one comes with each snapshot, so this is
    /// years of them, and a node cannot grow the index without end.
    static let auditHeadsPerNode = 100_000

    /// Takes the node's oldest snapshots out of the index until the newest `keep` remain and
    /// their compressed bytes fit `keepBytes` (the newest always stays), and audit heads past
    /// `auditHeadsPerNode`, and raises the node's `pruned_through`. Returns the pruned
    /// sequences, whose files are the caller's to delete: a crash in between leaves files the
    /// index no longer names, which the next start removes (at or below `pruned_through`).
    func prune(nodeID: String, keep: Int, keepBytes: UInt64) throws -> [UInt64] {
        try database.transaction { connection in
            let rows = try connection.query(
                "SELECT sequence, compressed_bytes FROM snapshots WHERE node_id = ? ORDER BY sequence DESC", [.text(nodeID)]
            ) { (sequence: UInt64($0.int64(0)), bytes: UInt64(max(0, $0.int64(1)))) }
            var kept: UInt64 = 0
            var pruned: [UInt64] = []
            // Both bounds only grow down the list: what is pruned is everything older than a point.
            for (index, row) in rows.enumerated() {
                kept = kept.addingReportingOverflow(row.bytes).overflow ? .max : kept + row.bytes
                if index > 0 && (index >= keep || kept > keepBytes) { pruned.append(row.sequence) }
            }
            for sequence in pruned {
                try connection.run("DELETE FROM snapshots WHERE node_id = ? AND sequence = ?", [.text(nodeID), .integer(Int64(sequence))])
            }
            if let newest = pruned.first {
                try connection.run(
                    "UPDATE nodes SET pruned_through = max(pruned_through, ?) WHERE node_id = ?", [.integer(Int64(newest)), .text(nodeID)])
            }
            try connection.run(
                """
                DELETE FROM audit_heads WHERE node_id = ? AND seq NOT IN
                    (SELECT seq FROM audit_heads WHERE node_id = ? ORDER BY seq DESC LIMIT ?)
                """, [.text(nodeID), .text(nodeID), .integer(Int64(Self.auditHeadsPerNode))])
            return pruned
        }
    }

    /// The newest sequence of the node's that retention let go (0: none).
    func prunedThrough(nodeID: String) throws -> UInt64 {
        try database.withConnection { connection in
            try connection.query("SELECT pruned_through FROM nodes WHERE node_id = ?", [.text(nodeID)]) { UInt64(max(0, $0.int64(0))) }.first ?? 0
        }
    }

    /// Every node that retention has pruned, with the newest sequence it let go.
    func prunedNodes() throws -> [(nodeID: String, through: UInt64)] {
        try database.withConnection { connection in
            try connection.query("SELECT node_id, pruned_through FROM nodes WHERE pruned_through > 0 ORDER BY node_id", []) {
                (nodeID: $0.text(0), through: UInt64($0.int64(1)))
            }
        }
    }
}
