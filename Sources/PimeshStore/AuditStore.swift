import PimeshCore

/// The audit log's tables (docs/audit.md). Writes go through the lead's one writer
/// (`append`, `appendHead` inside its transactions); reads use the read-only connection.
public struct AuditStore: Sendable {
    public let database: Database

    /// The schema version that made the audit tables.
    public static let firstSchemaVersion = 5

    public init(database: Database) {
        self.database = database
    }

    static let columns = "seq, wall_ms, mono_ms, boot_id, clock_synced, actor, kind, subject, body, prev_sha256, sha256"

    public static func append(_ record: AuditRecord, in connection: Connection) throws {
        try connection.run(
            "INSERT INTO audit_log (\(columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                .integer(record.seq), .integer(record.wallMs), .integer(record.monoMs), .text(record.bootID),
                .integer(record.clockSynced ? 1 : 0), .text(record.actor), .text(record.kind), .text(record.subject),
                .text(record.body), .text(record.prevSHA256), .text(record.sha256),
            ])
    }

    public static func appendHead(_ head: AuditHead, in connection: Connection) throws {
        try connection.run(
            "INSERT OR IGNORE INTO audit_heads (seq, sha256, at_ms, signature) VALUES (?, ?, ?, ?)",
            [.integer(head.seq), .text(head.sha256), .integer(head.atMs), .text(head.signature)])
    }

    /// Records that a snapshot carrying the head at `seq` reached upstream.
    public static func noteUpstream(seq: Int64, atMs: Int64, in connection: Connection) throws {
        try connection.run("INSERT OR IGNORE INTO audit_upstream (seq, confirmed_at_ms) VALUES (?, ?)", [.integer(seq), .integer(atMs)])
    }

    /// The highest row a head confirmed upstream covers; 0 when nothing reached upstream.
    public func upstreamSeq() throws -> Int64 {
        try database.read { connection in
            try connection.query("SELECT ifnull(max(seq), 0) FROM audit_upstream") { $0.int64(0) }.first ?? 0
        }
    }

    /// How far retention may prune: the newest head below every row younger than the
    /// retention, one confirmed upstream unless the node has no upstream at all
    /// (`upstreamOnly` false: the node's own signed heads are then all the evidence there is). A
    /// row written before the clock was synchronised (a Pi without an RTC may stamp a new row
    /// 1970) is judged by the monotonic clock when it is of this boot, and is kept, with every
    /// row after it, when it is of an earlier one.
    public func pruneTarget(retainMs: Int64, nowWallMs: Int64, bootID: String, nowMonoMs: Int64, upstreamOnly: Bool = true) throws -> AuditHead? {
        try database.read { connection in
            let keepFrom = try connection.query(
                """
                SELECT min(seq) FROM audit_log
                WHERE (clock_synced = 1 AND wall_ms >= ?) OR (clock_synced = 0 AND (boot_id != ? OR mono_ms >= ?))
                """, [.integer(nowWallMs - retainMs), .text(bootID), .integer(nowMonoMs - retainMs)]
            ) { $0.isNull(0) ? Int64.max : $0.int64(0) }.first ?? Int64.max
            return try connection.query(
                """
                SELECT h.seq, h.sha256, h.at_ms, h.signature FROM audit_heads h
                WHERE h.seq < ? AND h.seq <= (SELECT max(seq) FROM audit_log)
                AND (? = 0 OR h.seq IN (SELECT seq FROM audit_upstream)) ORDER BY h.seq DESC LIMIT 1
                """, [.integer(keepFrom), .integer(upstreamOnly ? 1 : 0)]
            ) {
                AuditHead(seq: $0.int64(0), sha256: $0.text(1), atMs: $0.int64(2), signature: $0.text(3))
            }.first
        }
    }

    /// Deletes rows through `seq`, after recording the anchor that lets the chain be verified
    /// from the next row on. The caller appends the `pruned_through` row itself.
    public static func prune(through seq: Int64, sha256: String, atMs: Int64, in connection: Connection) throws {
        try connection.run(
            "INSERT INTO audit_pruned (through_seq, sha256, at_ms) VALUES (?, ?, ?)", [.integer(seq), .text(sha256), .integer(atMs)])
        try connection.run("DELETE FROM audit_log WHERE seq <= ?", [.integer(seq)])
        // The head at the anchor stays: verification checks the anchor against it.
        try connection.run("DELETE FROM audit_heads WHERE seq < ?", [.integer(seq)])
    }

    static func record(_ row: Row) -> AuditRecord {
        AuditRecord(
            seq: row.int64(0), wallMs: row.int64(1), monoMs: row.int64(2), bootID: row.text(3), clockSynced: row.int(4) != 0,
            actor: row.text(5), kind: row.text(6), subject: row.text(7), body: row.text(8), prevSHA256: row.text(9),
            sha256: row.text(10))
    }

    /// The last committed row, or `.empty` before the genesis row.
    public func tip() throws -> AuditTip {
        try database.read { connection in
            try connection.query("SELECT seq, sha256 FROM audit_log ORDER BY seq DESC LIMIT 1") {
                AuditTip(seq: $0.int64(0), sha256: $0.text(1))
            }.first
        } ?? anchor().map { AuditTip(seq: $0.seq, sha256: $0.sha256) } ?? .empty
    }

    public struct Filter: Sendable {
        public var afterSeq: Int64 = 0
        public var sinceWallMs: Int64?
        public var actor: String?
        public var kind: String?

        public init(afterSeq: Int64 = 0, sinceWallMs: Int64? = nil, actor: String? = nil, kind: String? = nil) {
            self.afterSeq = afterSeq
            self.sinceWallMs = sinceWallMs
            self.actor = actor
            self.kind = kind
        }
    }

    /// Up to `limit` rows after `filter.afterSeq`, oldest first; with `newest`, the last
    /// `limit` of them (still oldest first).
    public func records(_ filter: Filter, limit: Int, newest: Bool = false) throws -> [AuditRecord] {
        var sql = "SELECT \(Self.columns) FROM audit_log WHERE seq > ?"
        var values: [SQLValue] = [.integer(filter.afterSeq)]
        if let since = filter.sinceWallMs {
            sql += " AND wall_ms >= ?"
            values.append(.integer(since))
        }
        if let actor = filter.actor {
            sql += " AND actor = ?"
            values.append(.text(actor))
        }
        if let kind = filter.kind {
            sql += " AND kind = ?"
            values.append(.text(kind))
        }
        sql += newest ? " ORDER BY seq DESC LIMIT ?" : " ORDER BY seq LIMIT ?"
        values.append(.integer(Int64(limit)))
        let rows = try database.read { try $0.query(sql, values, row: Self.record) }
        return newest ? rows.reversed() : rows
    }

    /// Every row from `seq` on, in pages, for verification: memory stays one page whatever the
    /// log's length.
    public func forEachRecord(from seq: Int64, pageSize: Int = 4096, _ body: (AuditRecord) throws -> Void) throws {
        var after = seq - 1
        while true {
            let page = try database.read { connection in
                try connection.query(
                    "SELECT \(Self.columns) FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?", [.integer(after), .integer(Int64(pageSize))],
                    row: Self.record)
            }
            for record in page { try body(record) }
            guard let last = page.last, page.count == pageSize else { return }
            after = last.seq
        }
    }

    public func heads() throws -> [AuditHead] {
        try database.read { connection in
            try connection.query("SELECT seq, sha256, at_ms, signature FROM audit_heads ORDER BY seq") {
                AuditHead(seq: $0.int64(0), sha256: $0.text(1), atMs: $0.int64(2), signature: $0.text(3))
            }
        }
    }

    public func newestHead() throws -> AuditHead? {
        try database.read { connection in
            try connection.query("SELECT seq, sha256, at_ms, signature FROM audit_heads ORDER BY seq DESC LIMIT 1") {
                AuditHead(seq: $0.int64(0), sha256: $0.text(1), atMs: $0.int64(2), signature: $0.text(3))
            }.first
        }
    }

    /// Where verification starts after pruning; nil while nothing was pruned.
    public func anchor() throws -> AuditVerifier.Anchor? {
        try database.read { connection in
            try connection.query("SELECT through_seq, sha256 FROM audit_pruned ORDER BY through_seq DESC LIMIT 1") {
                AuditVerifier.Anchor(seq: $0.int64(0), sha256: $0.text(1))
            }.first
        }
    }

    public struct Footprint: Sendable, Equatable {
        public var rows: Int
        public var firstSeq: Int64?
        public var lastSeq: Int64?
        /// Bytes of the rows' texts: what the log costs on the card, give or take SQLite's pages.
        public var bytes: Int64
    }

    public func footprint() throws -> Footprint {
        try database.read { connection in
            try connection.query(
                """
                SELECT count(*), min(seq), max(seq), ifnull(sum(length(CAST(boot_id AS BLOB)) + length(CAST(actor AS BLOB))
                    + length(CAST(kind AS BLOB)) + length(CAST(subject AS BLOB)) + length(CAST(body AS BLOB)) + 128 + 40), 0) FROM audit_log
                """
            ) {
                Footprint(
                    rows: $0.int(0), firstSeq: $0.isNull(1) ? nil : $0.int64(1), lastSeq: $0.isNull(2) ? nil : $0.int64(2),
                    bytes: $0.int64(3))
            }.first ?? Footprint(rows: 0, firstSeq: nil, lastSeq: nil, bytes: 0)
        }
    }

    public func record(seq: Int64) throws -> AuditRecord? {
        try database.read { connection in
            try connection.query("SELECT \(Self.columns) FROM audit_log WHERE seq = ?", [.integer(seq)], row: Self.record).first
        }
    }
}

extension AuditStore {
    /// Left in a restored database by `pimesh snapshot restore`, which runs while no lead does
    /// and so cannot append to the chain itself; the next lead chains a `snapshot_restored` row
    /// from it and removes it in the same transaction.
    public static let pendingRestoreKey = "audit_pending_restore"

    public static func markRestored(databasePath: String, body: String) throws {
        let database = try Database(path: databasePath)
        try database.transaction { connection in
            try connection.run(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [.text(pendingRestoreKey), .text(body)])
        }
    }

    public func pendingRestore() throws -> String? {
        try database.read { connection in
            try connection.query("SELECT value FROM meta WHERE key = ?", [.text(Self.pendingRestoreKey)]) { $0.text(0) }.first
        }
    }

    public static func clearPendingRestore(in connection: Connection) throws {
        try connection.run("DELETE FROM meta WHERE key = ?", [.text(pendingRestoreKey)])
    }
}
