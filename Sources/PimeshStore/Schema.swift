/// The lead's schema. Heartbeats never write: the hot state lives in RAM and only
/// registrations and periodic impedance checkpoints reach the SD card (DESIGN.md §5).
public enum Schema {
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
        ])
    ]
}
