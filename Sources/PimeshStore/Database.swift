import CSQLite

/// One SQLite connection, serialised by a lock. The lead owns exactly one writer
/// (DESIGN.md §5), so a single connection with WAL is all it needs.
public final class Database: Sendable {
    public let path: String
    // SQLite's handle is used only while `lock` is held.
    private nonisolated(unsafe) let handle: OpaquePointer
    private let lock = PThreadLock()

    /// Opens (creating if needed) the database, switches it to WAL with `synchronous=NORMAL`
    /// and brings the schema up to date.
    public init(path: String, migrations: [Migration] = Schema.migrations) throws {
        self.path = path
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw StoreError(code: rc, message: message, context: "open \(path)")
        }
        self.handle = handle
        // WAL lets readers (sqlite3 on the command line, backups) run beside the writer;
        // NORMAL syncs at checkpoints, not at every commit, which spares the SD card.
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=NORMAL")
        try execute("PRAGMA foreign_keys=ON")
        try execute("PRAGMA busy_timeout=5000")
        try migrate(migrations)
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    public func execute(_ sql: String) throws {
        try withConnection { try $0.execute(sql) }
    }

    /// Runs `body` with exclusive use of the connection.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        try lock.withLock { try body(Connection(handle: handle)) }
    }

    /// Runs `body` inside one transaction: committed when it returns, rolled back when it throws.
    public func transaction<T>(_ body: (Connection) throws -> T) throws -> T {
        try withConnection { connection in
            try connection.execute("BEGIN IMMEDIATE")
            do {
                let result = try body(connection)
                try connection.execute("COMMIT")
                return result
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    public var schemaVersion: Int {
        get throws {
            try withConnection { try $0.query("PRAGMA user_version") { $0.int(0) }.first ?? 0 }
        }
    }

    private func migrate(_ migrations: [Migration]) throws {
        let current = try schemaVersion
        let newest = migrations.map(\.version).max() ?? 0
        if current > newest {
            throw StoreError(
                code: SQLITE_ERROR, message: "database schema \(current) is newer than this pimesh knows (\(newest))",
                context: "open \(path)")
        }
        for migration in migrations.sorted(by: { $0.version < $1.version }) where migration.version > current {
            try transaction { connection in
                for statement in migration.statements {
                    try connection.execute(statement)
                }
                try connection.execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }
}
