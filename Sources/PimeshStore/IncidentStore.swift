import PimeshCore

/// The incidents table. Bodies are the incident as JSON (encoded by the runtime); writes go
/// through the lead's one writer, reads through the read connection.
public struct IncidentStore: Sendable {
    public let database: Database
    /// Resolved incidents kept, newest first; older ones leave (the audit log keeps their rows).
    public static let keepResolved = 500

    public init(database: Database) {
        self.database = database
    }

    public struct Row: Sendable, Equatable {
        public var id: Int64
        public var state: String
        public var body: String
        public var postmortem: String?
        public var csvRow: String?
    }

    public static func save(
        id: Int64, state: IncidentState, severity: Severity, openedMs: Int64, resolvedMs: Int64?, body: String, in connection: Connection
    ) throws {
        try connection.run(
            """
            INSERT INTO incidents (id, state, severity, opened_ms, resolved_ms, body) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET state = excluded.state, severity = excluded.severity, resolved_ms = excluded.resolved_ms,
                body = excluded.body
            """,
            [
                .integer(id), .text(state.rawValue), .integer(Int64(severity.rawValue)), .integer(openedMs),
                resolvedMs.map { .integer($0) } ?? .null, .text(body),
            ])
    }

    /// The write-up of a resolved incident, and the pruning of the oldest beyond the bound.
    public static func saveWriteUp(id: Int64, postmortem: String, csvRow: String, in connection: Connection) throws {
        try connection.run("UPDATE incidents SET postmortem = ?, csv_row = ? WHERE id = ?", [.text(postmortem), .text(csvRow), .integer(id)])
        try connection.run(
            """
            DELETE FROM incidents WHERE state = 'resolved' AND id NOT IN
                (SELECT id FROM incidents WHERE state = 'resolved' ORDER BY id DESC LIMIT ?)
            """, [.integer(Int64(keepResolved))])
    }

    public func open() throws -> [Row] {
        try rows("WHERE state != 'resolved' ORDER BY id", [])
    }

    /// The newest incidents first, open or not.
    public func recent(limit: Int, beforeID: Int64 = .max) throws -> [Row] {
        try rows("WHERE id < ? ORDER BY id DESC LIMIT ?", [.integer(beforeID), .integer(Int64(limit))])
    }

    public func row(id: Int64) throws -> Row? {
        try rows("WHERE id = ?", [.integer(id)]).first
    }

    public func maxID() throws -> Int64 {
        try database.read { try $0.query("SELECT ifnull(max(id), 0) FROM incidents") { $0.int64(0) }.first ?? 0 }
    }

    /// Seed 003's incident log, oldest first.
    public func csvRows() throws -> [String] {
        try database.read { connection in
            try connection.query("SELECT csv_row FROM incidents WHERE csv_row IS NOT NULL ORDER BY id") { $0.text(0) }
        }
    }

    private func rows(_ clause: String, _ values: [SQLValue]) throws -> [Row] {
        try database.read { connection in
            try connection.query("SELECT id, state, body, postmortem, csv_row FROM incidents \(clause)", values) { row in
                Row(
                    id: row.int64(0), state: row.text(1), body: row.text(2), postmortem: row.isNull(3) ? nil : row.text(3),
                    csvRow: row.isNull(4) ? nil : row.text(4))
            }
        }
    }
}
