import PimeshCore

/// Task persistence. Writes take a `Connection` so the group-commit writer batches them; reads
/// go through the database's read-only connection, off the cooperative pool.
public struct TaskStore: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    static let columns = """
        id, idempotency_key, capability, payload, weight, deadline_ms, state, agent_id, attempts, submitted_at_ms, \
        skip_reason, predicted_ms, lead_time_ms, finished_at_ms, actual_ms, result, error, priority, stored_bytes, ttl_ms
        """

    /// Inserts the row or updates it by id: the lead's copy in RAM is the authority while it
    /// runs. Not `INSERT OR REPLACE`, which would delete another task holding the same
    /// idempotency key instead of failing.
    public static func save(_ task: TaskRow, in connection: Connection) throws {
        try connection.run(
            """
            INSERT INTO tasks (\(columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET idempotency_key = excluded.idempotency_key, capability = excluded.capability,
                payload = excluded.payload, weight = excluded.weight, deadline_ms = excluded.deadline_ms, state = excluded.state,
                agent_id = excluded.agent_id, attempts = excluded.attempts, submitted_at_ms = excluded.submitted_at_ms,
                skip_reason = excluded.skip_reason, predicted_ms = excluded.predicted_ms, lead_time_ms = excluded.lead_time_ms, finished_at_ms = excluded.finished_at_ms,
                actual_ms = excluded.actual_ms, result = excluded.result, error = excluded.error,
                priority = excluded.priority, stored_bytes = excluded.stored_bytes, ttl_ms = excluded.ttl_ms
            """,
            [
                .text(task.id), task.idempotencyKey.map(SQLValue.text) ?? .null, .text(task.capability), .text(task.payload),
                .real(task.weight), task.deadlineMs.map { .integer(Int64($0)) } ?? .null, .text(task.state.rawValue),
                task.agentID.map { .text($0.description) } ?? .null, .integer(Int64(task.attempts)),
                .integer(task.submittedAtMs), task.skipReason.map(SQLValue.text) ?? .null,
                task.predictedMs.map(SQLValue.real) ?? .null, task.leadTimeMs.map(SQLValue.real) ?? .null,
                task.finishedAtMs.map(SQLValue.integer) ?? .null,
                task.actualMs.map(SQLValue.real) ?? .null, task.result.map(SQLValue.text) ?? .null,
                task.error.map(SQLValue.text) ?? .null, .integer(Int64(task.priority)), .integer(Int64(task.storedBytes)),
                task.ttlMs.map { .integer(Int64($0)) } ?? .null,
            ])
    }

    static func decode(_ row: Row) throws -> TaskRow {
        let stateText = row.text(6)
        guard let state = TaskState(rawValue: stateText) else {
            throw StoreError(code: 0, message: "task \(row.text(0)) has unknown state '\(stateText)'", context: "load tasks")
        }
        var task = TaskRow(
            id: row.text(0), idempotencyKey: row.isNull(1) ? nil : row.text(1), capability: row.text(2), payload: row.text(3),
            weight: row.double(4), deadlineMs: row.isNull(5) ? nil : row.int(5), state: state,
            agentID: row.isNull(7) ? nil : AgentID(row.text(7)), attempts: row.int(8), submittedAtMs: row.int64(9),
            skipReason: row.isNull(10) ? nil : row.text(10), predictedMs: row.isNull(11) ? nil : row.double(11),
            leadTimeMs: row.isNull(12) ? nil : row.double(12), finishedAtMs: row.isNull(13) ? nil : row.int64(13),
            actualMs: row.isNull(14) ? nil : row.double(14), result: row.isNull(15) ? nil : row.text(15),
            error: row.isNull(16) ? nil : row.text(16))
        task.priority = row.int(17)
        task.ttlMs = row.isNull(19) ? nil : row.int(19)
        return task
    }

    /// Tasks that were accepted and never finished, oldest first: the lead requeues them at start.
    public func loadOpen() throws -> [TaskRow] {
        try database.read { connection in
            try connection.query(
                "SELECT \(Self.columns) FROM tasks WHERE state IN ('queued', 'assigned', 'running') ORDER BY submitted_at_ms, id",
                row: Self.decode)
        }
    }

    public func load(id: String) throws -> TaskRow? {
        try database.read { connection in
            try connection.query("SELECT \(Self.columns) FROM tasks WHERE id = ?", [.text(id)], row: Self.decode).first
        }
    }

    /// Ids that start with `prefix`, at most `limit` (IDPrefix): a range on the primary key.
    public func ids(withPrefix prefix: String, limit: Int) throws -> [String] {
        try database.read { connection in
            try connection.query(
                "SELECT id FROM tasks WHERE id >= ? AND id < ? ORDER BY id LIMIT ?", [.text(prefix), .text(prefix + "~"), .integer(Int64(limit))]
            ) { $0.text(0) }
        }
    }

    public func load(idempotencyKey: String) throws -> TaskRow? {
        try database.read { connection in
            try connection.query(
                "SELECT \(Self.columns) FROM tasks WHERE idempotency_key = ?", [.text(idempotencyKey)], row: Self.decode
            ).first
        }
    }

    /// Where a page of the newest-first task list ends: the next page starts after this task.
    public struct Cursor: Sendable, Equatable {
        public var submittedAtMs: Int64
        public var id: String

        public init(submittedAtMs: Int64, id: String) {
            self.submittedAtMs = submittedAtMs
            self.id = id
        }

        /// Whether a task comes after the cursor in newest-first order.
        public func precedes(submittedAtMs: Int64, id: String) -> Bool {
            (submittedAtMs, id) < (self.submittedAtMs, self.id)
        }
    }

    /// The newest tasks first (ties by id, descending), optionally of one state, after `cursor`.
    public func recent(limit: Int, state: TaskState? = nil, after cursor: Cursor? = nil) throws -> [TaskRow] {
        var conditions: [String] = []
        var values: [SQLValue] = []
        if let state {
            conditions.append("state = ?")
            values.append(.text(state.rawValue))
        }
        if let cursor {
            conditions.append("(submitted_at_ms, id) < (?, ?)")
            values += [.integer(cursor.submittedAtMs), .text(cursor.id)]
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        return try database.read { connection in
            try connection.query(
                "SELECT \(Self.columns) FROM tasks \(filter) ORDER BY submitted_at_ms DESC, id DESC LIMIT ?",
                values + [.integer(Int64(limit))], row: Self.decode)
        }
    }

    /// Finished and open tasks as stored: how many, and what they count against the budget.
    public struct Totals: Sendable, Equatable {
        public var finished = 0
        public var finishedBytes = 0
        public var open = 0
        public var openBytes = 0

        public init() {}

        public var bytes: Int { finishedBytes + openBytes }
    }

    public static func totals(in connection: Connection) throws -> Totals {
        var totals = Totals()
        let rows = try connection.query(
            "SELECT state IN ('queued', 'assigned', 'running'), COUNT(*), TOTAL(stored_bytes) FROM tasks GROUP BY 1"
        ) { ($0.int(0) != 0, $0.int(1), Int($0.double(2))) }
        for (open, count, bytes) in rows {
            if open {
                totals.open = count
                totals.openBytes = bytes
            } else {
                totals.finished = count
                totals.finishedBytes = bytes
            }
        }
        return totals
    }

    public func totals() throws -> Totals {
        try database.read { connection in try Self.totals(in: connection) }
    }

    /// The latest finish among stored tasks (the partial index's last entry), nil when none.
    public func newestFinishedAtMs() throws -> Int64? {
        try database.read { connection in
            try connection.query(
                "SELECT max(finished_at_ms) FROM tasks WHERE state NOT IN ('queued', 'assigned', 'running')"
            ) { $0.isNull(0) ? nil : $0.int64(0) }.first ?? nil
        }
    }

    /// What one pruning pass removed, and what is stored after it.
    public struct Pruned: Sendable {
        public var ids: [String] = []
        public var bytes = 0
        public var totals = Totals()

        public init() {}
    }

    /// Deletes up to `batch` finished tasks that `retention` no longer keeps, earliest finish
    /// first: in the order the store committed the finishes (`finish_seq`, Schema version 9),
    /// not by the wall clock, which can step back. Runs inside the writer's transaction, so the
    /// totals it judges by include every queued write.
    public static func pruneFinished(
        retention: TaskRetention, nowMs: Int64, batch: Int, makeRoom: Bool, in connection: Connection
    ) throws -> Pruned {
        var pruned = Pruned()
        let totals = try totals(in: connection)
        let oldest = try connection.query(
            """
            SELECT id, ifnull(finished_at_ms, submitted_at_ms), stored_bytes FROM tasks
            WHERE state NOT IN ('queued', 'assigned', 'running') ORDER BY finish_seq, id LIMIT ?
            """, [.integer(Int64(batch))]
        ) { (id: $0.text(0), finishedAtMs: $0.int64(1), bytes: $0.int(2)) }
        let count = retention.prunable(
            oldest: oldest.map { ($0.finishedAtMs, $0.bytes) }, finishedCount: totals.finished, storedBytes: totals.bytes,
            nowMs: nowMs, makeRoom: makeRoom)
        for row in oldest.prefix(count) {
            try connection.run("DELETE FROM tasks WHERE id = ?", [.text(row.id)])
            pruned.ids.append(row.id)
            pruned.bytes += row.bytes
        }
        pruned.totals = totals
        pruned.totals.finished -= count
        pruned.totals.finishedBytes -= pruned.bytes
        return pruned
    }

    public func countByState() throws -> [TaskState: Int] {
        let rows = try database.read { connection in
            try connection.query("SELECT state, COUNT(*) FROM tasks GROUP BY state") { ($0.text(0), $0.int(1)) }
        }
        var result: [TaskState: Int] = [:]
        for (text, count) in rows {
            if let state = TaskState(rawValue: text) { result[state] = count }
        }
        return result
    }
}
