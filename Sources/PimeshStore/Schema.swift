/// The lead's schema. Heartbeats never write: the hot state lives in RAM and only
/// registrations and periodic impedance checkpoints reach the SD card (DESIGN.md §5).
public enum Schema {
    /// The schema this pimesh makes and reads; a database newer than it is refused.
    public static var newest: Int { migrations.map(\.version).max() ?? 0 }

    public static let migrations: [Migration] = [
        Migration(version: 1, statements: [
            """
            CREATE TABLE agents (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                class TEXT NOT NULL,
                capabilities TEXT NOT NULL,
                secret BLOB NOT NULL,
                registered_at_ms INTEGER NOT NULL
            )
            """,
            // One row per agent, overwritten at each checkpoint: the last known impedance and
            // the last accepted iteration, so a restarted lead still refuses old replays.
            """
            CREATE TABLE agent_checkpoints (
                agent_id TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
                at_ms INTEGER NOT NULL,
                last_iteration INTEGER NOT NULL,
                state INTEGER NOT NULL,
                latency_ms REAL NOT NULL,
                queue_depth INTEGER NOT NULL,
                score INTEGER NOT NULL,
                reliability REAL NOT NULL,
                drift REAL NOT NULL
            )
            """,
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ]),
        // Tasks are written when accepted (before the API answers), when handed to an agent and
        // when finished: three small writes per task, none per heartbeat.
        Migration(version: 2, statements: [
            """
            CREATE TABLE tasks (
                id TEXT PRIMARY KEY,
                idempotency_key TEXT UNIQUE,
                capability TEXT NOT NULL,
                payload TEXT NOT NULL,
                weight REAL NOT NULL,
                deadline_ms INTEGER,
                state TEXT NOT NULL,
                agent_id TEXT,
                attempts INTEGER NOT NULL,
                submitted_at_ms INTEGER NOT NULL,
                skip_reason TEXT,
                predicted_ms REAL,
                lead_time_ms REAL,
                finished_at_ms INTEGER,
                actual_ms REAL,
                result TEXT,
                error TEXT
            )
            """,
            "CREATE INDEX tasks_open ON tasks(state) WHERE state IN ('queued', 'assigned', 'running')",
            "CREATE INDEX tasks_submitted ON tasks(submitted_at_ms)",
            // Seed 001 §5.1 `conflict_log = AppendOnlyLog()`: the triggers make it one.
            """
            CREATE TABLE conflicts (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                at_ms INTEGER NOT NULL,
                agent_id TEXT NOT NULL,
                source TEXT NOT NULL,
                type TEXT NOT NULL,
                priority INTEGER NOT NULL,
                strategy TEXT NOT NULL,
                expected TEXT,
                received TEXT,
                context_hash TEXT,
                quarantined INTEGER NOT NULL
            )
            """,
            "CREATE TRIGGER conflicts_append_only_update BEFORE UPDATE ON conflicts BEGIN SELECT RAISE(ABORT, 'the conflict log is append-only'); END",
            "CREATE TRIGGER conflicts_append_only_delete BEFORE DELETE ON conflicts BEGIN SELECT RAISE(ABORT, 'the conflict log is append-only'); END",
            """
            CREATE TABLE quarantines (
                agent_id TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
                since_ms INTEGER NOT NULL,
                conflict_seq INTEGER,
                reason TEXT NOT NULL
            )
            """,
        ]),
        // Seed 001 message priority (0 background … 3 critical): degraded nodes shed by it.
        Migration(version: 3, statements: [
            "ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 2",
        ]),
        // Bounded storage (docs/operations.md, "Bounds"): what each row counts against
        // tasks.max_stored_mb, written by TaskStore.save as TaskRow.storedBytes computes it; rows
        // of older versions get an estimate from their texts. Finished tasks are pruned oldest
        // finish first, so they get an index in that order.
        Migration(version: 4, statements: [
            "ALTER TABLE tasks ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0",
            """
            UPDATE tasks SET stored_bytes = 256 + length(CAST(payload AS BLOB)) + ifnull(length(CAST(result AS BLOB)), 0)
                + ifnull(length(CAST(error AS BLOB)), 0) + ifnull(length(CAST(skip_reason AS BLOB)), 0)
                + ifnull(length(CAST(idempotency_key AS BLOB)), 0) + length(CAST(capability AS BLOB))
            """,
            // Covering, so that pruning and the totals read the index, never the payloads.
            "CREATE INDEX tasks_finished ON tasks(finished_at_ms, id, stored_bytes, submitted_at_ms) WHERE state NOT IN ('queued', 'assigned', 'running')",
            "CREATE INDEX tasks_bytes ON tasks(state, stored_bytes)",
            "CREATE INDEX tasks_newest ON tasks(submitted_at_ms DESC, id DESC)",
        ]),
        // The audit log (docs/audit.md): a hash chain whose rule lives in PimeshCore.AuditChain.
        // The triggers keep honest code honest; `pimesh audit verify` does not rely on them.
        // Rows leave only by pruning, and only rows an `audit_pruned` anchor already covers.
        Migration(version: 5, statements: [
            """
            CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY,
                wall_ms INTEGER NOT NULL,
                mono_ms INTEGER NOT NULL,
                boot_id TEXT NOT NULL,
                clock_synced INTEGER NOT NULL,
                actor TEXT NOT NULL,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                body TEXT NOT NULL,
                prev_sha256 TEXT NOT NULL,
                sha256 TEXT NOT NULL
            )
            """,
            // No index on wall_ms: each would add a page to every commit's WAL frames (issue 17's
            // SD budget); `--since` scans, which the retention keeps short.
            """
            CREATE TABLE audit_heads (
                seq INTEGER PRIMARY KEY,
                sha256 TEXT NOT NULL,
                at_ms INTEGER NOT NULL,
                signature TEXT NOT NULL
            )
            """,
            // Heads that upstream confirmed holding (in a snapshot's manifest): pruning stops
            // only at one of them, so the anchor it leaves is a head kept off the node.
            "CREATE TABLE audit_upstream (seq INTEGER PRIMARY KEY, confirmed_at_ms INTEGER NOT NULL)",
            """
            CREATE TABLE audit_pruned (
                through_seq INTEGER PRIMARY KEY,
                sha256 TEXT NOT NULL,
                at_ms INTEGER NOT NULL
            )
            """,
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            """
            CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            WHEN old.seq > (SELECT ifnull(max(through_seq), 0) FROM audit_pruned)
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: rows leave only by pruning'); END
            """,
            "CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads BEGIN SELECT RAISE(ABORT, 'audit heads are append-only'); END",
            """
            CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
            WHEN old.seq >= (SELECT ifnull(max(through_seq), 0) FROM audit_pruned)
            BEGIN SELECT RAISE(ABORT, 'audit heads are append-only'); END
            """,
        ]),
        // Incidents (docs/incidents.md): the book's state, so that a lead that starts again
        // goes on with the open ones; resolved ones keep their post-mortem and travel in
        // snapshots. The audit log holds every change; this table holds the current picture.
        Migration(version: 6, statements: [
            """
            CREATE TABLE incidents (
                id INTEGER PRIMARY KEY,
                state TEXT NOT NULL,
                severity INTEGER NOT NULL,
                opened_ms INTEGER NOT NULL,
                resolved_ms INTEGER,
                body TEXT NOT NULL,
                postmortem TEXT,
                csv_row TEXT
            )
            """,
            "CREATE INDEX incidents_open ON incidents (state) WHERE state != 'resolved'",
        ]),
        // Seed 001 `ttl_ms`: queued tasks expire; rows from before keep NULL and never do.
        Migration(version: 7, statements: [
            "ALTER TABLE tasks ADD COLUMN ttl_ms INTEGER",
        ]),
        // Seed 001 §5.1 resolution deadlines: the log stays append-only, resolutions sit beside it.
        Migration(version: 8, statements: [
            """
            CREATE TABLE conflict_resolutions (
                seq INTEGER PRIMARY KEY REFERENCES conflicts (seq),
                at_ms INTEGER NOT NULL,
                actor TEXT NOT NULL,
                note TEXT NOT NULL
            )
            """,
        ]),
        // Retention's count and byte bounds delete the earliest finished first. By wall clock,
        // a clock stepped back made the newest look earliest: they were deleted and their
        // idempotency keys forgotten, so a resubmission ran twice. The store numbers finishes in
        // commit order instead; rows finished before this version keep NULL and go first.
        Migration(version: 9, statements: [
            "ALTER TABLE tasks ADD COLUMN finish_seq INTEGER",
            "CREATE INDEX tasks_finish_order ON tasks(finish_seq, id, stored_bytes, finished_at_ms, submitted_at_ms) WHERE state NOT IN ('queued', 'assigned', 'running')",
            "CREATE TRIGGER tasks_finish_order_on_insert AFTER INSERT ON tasks " + numberTheFinish,
            "CREATE TRIGGER tasks_finish_order_on_update AFTER UPDATE OF state ON tasks " + numberTheFinish,
        ]),
        // An agent registered through the API may not become a supervised manifest's, also
        // across a restart; rows from before keep NULL and are judged by the manifest history.
        Migration(version: 10, statements: [
            "ALTER TABLE agents ADD COLUMN self_registered INTEGER",
        ]),
    ]

    /// Schema 9's trigger body: a task that has just finished gets the next finish number.
    private static let numberTheFinish = """
        WHEN NEW.state NOT IN ('queued', 'assigned', 'running') AND NEW.finish_seq IS NULL
        BEGIN
            UPDATE tasks SET finish_seq = (
                SELECT ifnull(max(finish_seq), 0) + 1 FROM tasks WHERE state NOT IN ('queued', 'assigned', 'running'))
            WHERE id = NEW.id;
        END
        """
}