import CSQLite

/// The lead's SQLite database: one read-write connection for the one writer (DESIGN.md §5)
/// and one read-only connection for everything that only reads. With WAL a reader never waits
/// for the writer, however long the writer's fsync takes on an SD card.
public final class Database: Sendable {
    public let path: String
    // Each handle is used only while its lock is held.
    private nonisolated(unsafe) let handle: OpaquePointer
    private let lock = PThreadLock()
    // Set once at the end of `init`, after the schema is current; never changed again.
    private nonisolated(unsafe) var readHandle: OpaquePointer?
    private let readLock = PThreadLock()
    /// The writer's prepared statements, used only while `lock` is held. The writer runs the
    /// same few statements for every task; the reader runs restores and status queries once in
    /// a while, whose kept statements would be memory for nothing (90 KB of them in one run).
    private nonisolated(unsafe) let writeStatements = StatementCache()
    /// Each connection's page cache. SQLite's default (2,000 KiB) would grow the lead's heap by
    /// up to 4 MiB over two connections as the database grows on a Pi that runs for months;
    /// pages past it are read again, usually from the kernel's page cache, not the SD card.
    public static let pageCacheKiB = 1024

    /// Opens (creating if needed) the database, switches it to WAL with `synchronous=NORMAL`
    /// and brings the schema up to date. `readOnly` (an auditor's `pimesh audit verify`) neither
    /// creates, changes the journal mode nor migrates: it only refuses a schema it does not know.
    public init(path: String, migrations: [Migration] = Schema.migrations, readOnly: Bool = false) throws {
        self.path = path
        let flags = readOnly ? SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        handle = try SQLiteLibrary.open(path, flags: flags, context: "open \(path)")
        do {
            try prepare(readOnly: readOnly, migrations: migrations)
        } catch let error as StoreError {
            // "disk I/O error during PRAGMA user_version" names neither the file nor the cause.
            let cause = !readOnly && isOutOfSpace(error) ? "; \(storeIsFull)" : ""
            let context = error.context.contains(path) ? error.context : "\(error.context) in \(path)"
            throw StoreError(code: error.code, message: error.message + cause, context: context)
        }
    }

    private func prepare(readOnly: Bool, migrations: [Migration]) throws {
        try execute("PRAGMA busy_timeout=5000")
        try execute("PRAGMA cache_size=-\(Self.pageCacheKiB)")
        if readOnly {
            // Every stored property is set by now: when init throws, deinit closes the handle.
            let known = migrations.map(\.version).max() ?? 0
            if try schemaVersion > known {
                throw StoreError(code: SQLITE_ERROR, message: "database schema is newer than this pimesh knows (\(known))", context: "open \(path)")
            }
        } else {
            // WAL lets readers (sqlite3 on the command line, backups) run beside the writer;
            // NORMAL syncs at checkpoints, not at every commit, which spares the SD card.
            try execute("PRAGMA journal_mode=WAL")
            try execute("PRAGMA synchronous=NORMAL")
            try execute("PRAGMA foreign_keys=ON")
            try migrate(migrations)
        }
        let reader = try SQLiteLibrary.open(path, flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, context: "open \(path) for reading")
        readHandle = reader
        sqlite3_busy_timeout(reader, 5000)
        // readHandle is set: if this throws, deinit closes both handles.
        guard sqlite3_exec(reader, "PRAGMA cache_size=-\(Self.pageCacheKiB)", nil, nil, nil) == SQLITE_OK else {
            throw StoreError(code: sqlite3_errcode(reader), message: String(cString: sqlite3_errmsg(reader)), context: "open \(path) for reading")
        }
    }

    deinit {
        writeStatements.removeAll()
        if let readHandle { sqlite3_close_v2(readHandle) }
        sqlite3_close_v2(handle)
    }

    /// Runs `body` with the read-only connection: it sees the last committed state and never
    /// waits for the writer. Blocking all the same (SQLite I/O): call it off the event loops
    /// and the cooperative pool.
    public func read<T>(_ body: (Connection) throws -> T) throws -> T {
        try readLock.withLock { try body(Connection(handle: readHandle!)) }
    }

    public func execute(_ sql: String) throws {
        try withConnection { try $0.execute(sql) }
    }

    /// Runs `body` with exclusive use of the connection.
    public func withConnection<T>(_ body: (Connection) throws -> T) throws -> T {
        try lock.withLock { try body(Connection(handle: handle, statements: writeStatements)) }
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

    @_optimize(size)  // cold: once at start (the 25 MB budget)
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
