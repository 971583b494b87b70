import PimeshCore

/// One entry of the append-only conflict log.
public struct ConflictRecord: Sendable, Equatable {
    public var seq: Int64
    public var atMs: Int64
    public var agentID: AgentID
    /// The task or scatter-gather operation the conflicting answer belonged to.
    public var source: String
    public var type: ConflictType
    public var priority: Int
    public var strategy: String
    public var expected: String?
    public var received: String?
    public var contextHash: String?
    public var quarantined: Bool

    public init(
        seq: Int64 = 0, atMs: Int64, agentID: AgentID, source: String, type: ConflictType, priority: Int, strategy: String,
        expected: String?, received: String?, contextHash: String?, quarantined: Bool
    ) {
        self.seq = seq
        self.atMs = atMs
        self.agentID = agentID
        self.source = source
        self.type = type
        self.priority = priority
        self.strategy = strategy
        self.expected = expected
        self.received = received
        self.contextHash = contextHash
        self.quarantined = quarantined
    }
}

/// Who resolved a logged conflict, when and how.
public struct ConflictResolution: Sendable, Equatable {
    public var seq: Int64
    public var atMs: Int64
    public var actor: String
    public var note: String

    public init(seq: Int64, atMs: Int64, actor: String, note: String) {
        self.seq = seq
        self.atMs = atMs
        self.actor = actor
        self.note = note
    }
}

/// An agent held out of routing, and why.
public struct Quarantine: Sendable, Equatable {
    public var agentID: AgentID
    public var sinceMs: Int64
    public var conflictSeq: Int64?
    public var reason: String

    public init(agentID: AgentID, sinceMs: Int64, conflictSeq: Int64?, reason: String) {
        self.agentID = agentID
        self.sinceMs = sinceMs
        self.conflictSeq = conflictSeq
        self.reason = reason
    }
}

/// The conflict log (append-only: triggers refuse UPDATE and DELETE) and the quarantine table.
public struct ConflictStore: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    /// Appends and, when the record quarantines its agent, records the quarantine in the same
    /// write. Returns the entry's sequence number.
    @discardableResult
    public static func append(_ record: ConflictRecord, in connection: Connection) throws -> Int64 {
        try connection.run(
            """
            INSERT INTO conflicts (at_ms, agent_id, source, type, priority, strategy, expected, received, context_hash, quarantined)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                .integer(record.atMs), .text(record.agentID.description), .text(record.source), .text(record.type.rawValue),
                .integer(Int64(record.priority)), .text(record.strategy), record.expected.map(SQLValue.text) ?? .null,
                record.received.map(SQLValue.text) ?? .null, record.contextHash.map(SQLValue.text) ?? .null,
                .integer(record.quarantined ? 1 : 0),
            ])
        let seq = try connection.query("SELECT last_insert_rowid()") { $0.int64(0) }.first ?? 0
        if record.quarantined {
            try quarantine(
                Quarantine(
                    agentID: record.agentID, sinceMs: record.atMs, conflictSeq: seq,
                    reason: "\(record.type.rawValue) conflict (priority \(record.priority))"),
                in: connection)
        }
        return seq
    }

    public static func quarantine(_ quarantine: Quarantine, in connection: Connection) throws {
        try connection.run(
            "INSERT OR IGNORE INTO quarantines (agent_id, since_ms, conflict_seq, reason) VALUES (?, ?, ?, ?)",
            [
                .text(quarantine.agentID.description), .integer(quarantine.sinceMs),
                quarantine.conflictSeq.map(SQLValue.integer) ?? .null, .text(quarantine.reason),
            ])
    }

    /// Releases the agent and resolves the conflict that quarantined it, if one did.
    public static func release(_ agentID: AgentID, atMs: Int64, actor: String, in connection: Connection) throws {
        let seqs = try connection.query(
            "SELECT conflict_seq FROM quarantines WHERE agent_id = ? AND conflict_seq IS NOT NULL", [.text(agentID.description)]
        ) { $0.int64(0) }
        try connection.run("DELETE FROM quarantines WHERE agent_id = ?", [.text(agentID.description)])
        for seq in seqs {
            try resolve(ConflictResolution(seq: seq, atMs: atMs, actor: actor, note: "agent released from quarantine"), in: connection)
        }
    }

    /// Records a resolution; the first one stands. Returns whether this one was recorded.
    @discardableResult
    public static func resolve(_ resolution: ConflictResolution, in connection: Connection) throws -> Bool {
        try connection.run(
            "INSERT OR IGNORE INTO conflict_resolutions (seq, at_ms, actor, note) VALUES (?, ?, ?, ?)",
            [.integer(resolution.seq), .integer(resolution.atMs), .text(resolution.actor), .text(resolution.note)])
        return try connection.query("SELECT changes()") { $0.int(0) }.first == 1
    }

    public func resolutions(of seqs: [Int64]) throws -> [Int64: ConflictResolution] {
        guard !seqs.isEmpty else { return [:] }
        return try database.read { connection in
            let marks = Array(repeating: "?", count: seqs.count).joined(separator: ", ")
            let rows = try connection.query(
                "SELECT seq, at_ms, actor, note FROM conflict_resolutions WHERE seq IN (\(marks))", seqs.map(SQLValue.integer)
            ) { ConflictResolution(seq: $0.int64(0), atMs: $0.int64(1), actor: $0.text(2), note: $0.text(3)) }
            return Dictionary(rows.map { ($0.seq, $0) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// The newest unresolved conflicts that have a resolution time (priority ≥ 1), at most `limit`.
    public func unresolved(limit: Int) throws -> [ConflictRecord] {
        try database.read { connection in
            try connection.query(
                """
                SELECT c.seq FROM conflicts c LEFT JOIN conflict_resolutions r ON r.seq = c.seq
                WHERE r.seq IS NULL AND c.priority >= 1 ORDER BY c.seq DESC LIMIT ?
                """, [.integer(Int64(limit))]
            ) { $0.int64(0) }
        }.compactMap { seq in try record(seq: seq) }
    }

    public func record(seq: Int64) throws -> ConflictRecord? {
        try database.read { connection in
            try connection.query(
                """
                SELECT seq, at_ms, agent_id, source, type, priority, strategy, expected, received, context_hash, quarantined
                FROM conflicts WHERE seq = ?
                """, [.integer(seq)]) { try Self.decode(row: $0) }
        }.first
    }

    static func decode(row: Row) throws -> ConflictRecord {
        guard let agentID = AgentID(row.text(2)) else {
            throw StoreError(code: 0, message: "conflict \(row.int64(0)) has a damaged agent id", context: "load conflicts")
        }
        return ConflictRecord(
            seq: row.int64(0), atMs: row.int64(1), agentID: agentID, source: row.text(3),
            type: ConflictType(rawValue: row.text(4)) ?? .other, priority: row.int(5), strategy: row.text(6),
            expected: row.isNull(7) ? nil : row.text(7), received: row.isNull(8) ? nil : row.text(8),
            contextHash: row.isNull(9) ? nil : row.text(9), quarantined: row.int(10) != 0)
    }

    /// The newest entries first; with `before`, those older than that sequence number. Reading
    /// stops at the first entry that takes the evidence read past `maxBytes`: each entry may
    /// carry 8 KB of an agent's text, and a page of 10,000 was read whole (80 MB) before the
    /// API cut it to 1 MiB.
    public func recent(limit: Int, before: Int64? = nil, maxBytes: Int = .max) throws -> [ConflictRecord] {
        var bytes = 0
        return try database.read { connection in
            try connection.query(
                """
                SELECT seq, at_ms, agent_id, source, type, priority, strategy, expected, received, context_hash, quarantined
                FROM conflicts WHERE seq < ? ORDER BY seq DESC LIMIT ?
                """, [.integer(before ?? .max), .integer(Int64(limit))], row: { try Self.decode(row: $0) },
                keepGoing: { record in
                    bytes += (record.expected?.utf8.count ?? 0) + (record.received?.utf8.count ?? 0) + (record.contextHash?.utf8.count ?? 0)
                    return bytes <= maxBytes
                })
        }
    }

    public func count() throws -> Int {
        try database.read { try $0.query("SELECT COUNT(*) FROM conflicts") { $0.int(0) }.first ?? 0 }
    }

    public func quarantines() throws -> [Quarantine] {
        try database.read { connection in
            try connection.query("SELECT agent_id, since_ms, conflict_seq, reason FROM quarantines ORDER BY since_ms") {
                row -> Quarantine? in
                guard let id = AgentID(row.text(0)) else { return nil }
                return Quarantine(
                    agentID: id, sinceMs: row.int64(1), conflictSeq: row.isNull(2) ? nil : row.int64(2), reason: row.text(3))
            }.compactMap { $0 }
        }
    }
}
