import CSQLite

/// A borrowed connection, valid inside `Database.withConnection` or `transaction` only.
public struct Connection {
    let handle: OpaquePointer
    /// The connection's prepared statements, reused by `run` and `query`; nil prepares each time.
    let statements: StatementCache?

    init(handle: OpaquePointer, statements: StatementCache? = nil) {
        self.handle = handle
        self.statements = statements
    }

    /// False once SQLite has rolled the transaction back by itself, as it may after a full disk
    /// or an I/O error: savepoints are gone with it.
    public var inTransaction: Bool {
        sqlite3_get_autocommit(handle) == 0
    }

    public func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(error)
            throw StoreError(code: rc, message: message, context: sql)
        }
    }

    /// Runs a statement with bound values, once.
    public func run(_ sql: String, _ values: [SQLValue] = []) throws {
        let statement = try Statement(connection: handle, sql: sql, cache: statements)
        try statement.bind(values)
        _ = try statement.step()
    }

    /// Runs a query and maps each row.
    public func query<T>(_ sql: String, _ values: [SQLValue] = [], row: (Row) throws -> T) throws -> [T] {
        let statement = try Statement(connection: handle, sql: sql, cache: statements)
        try statement.bind(values)
        var result: [T] = []
        while try statement.step() {
            result.append(try row(Row(statement: statement.handle)))
        }
        return result
    }

    /// Runs a query and maps rows until `keepGoing`, asked after each, says no: that row is the
    /// last one returned, and the rest are never read.
    public func query<T>(_ sql: String, _ values: [SQLValue] = [], row: (Row) throws -> T, keepGoing: (T) -> Bool) throws -> [T] {
        let statement = try Statement(connection: handle, sql: sql, cache: statements)
        try statement.bind(values)
        var result: [T] = []
        while try statement.step() {
            let mapped = try row(Row(statement: statement.handle))
            result.append(mapped)
            if !keepGoing(mapped) { break }
        }
        return result
    }

    /// Rows changed by the last INSERT, UPDATE or DELETE.
    public var changes: Int {
        Int(sqlite3_changes(handle))
    }
}

public enum SQLValue: Sendable, Equatable {
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
    case null
}

/// One result row; columns are read by index.
public struct Row {
    let statement: OpaquePointer

    public func int(_ column: Int32) -> Int {
        Int(sqlite3_column_int64(statement, column))
    }

    public func int64(_ column: Int32) -> Int64 {
        sqlite3_column_int64(statement, column)
    }

    public func double(_ column: Int32) -> Double {
        sqlite3_column_double(statement, column)
    }

    public func isNull(_ column: Int32) -> Bool {
        sqlite3_column_type(statement, column) == SQLITE_NULL
    }

    /// Every byte of the value: a NUL inside it (an agent's answer, an operator's note) is text
    /// too, and stopping there made audit rows read back other than they were hashed.
    public func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, column) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let pointer = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}

final class Statement {
    let handle: OpaquePointer
    private let connection: OpaquePointer
    private let sql: String
    private let cache: StatementCache?
    /// What the cache counted for this statement when it was kept before.
    private let keptBytes: Int?

    init(connection: OpaquePointer, sql: String, cache: StatementCache? = nil) throws {
        self.connection = connection
        self.sql = sql
        self.cache = cache
        if let (cached, bytes) = cache?.take(sql) {
            handle = cached
            keptBytes = bytes
            return
        }
        var statement: OpaquePointer?
        // A statement to keep is marked persistent: SQLite then builds it outside the
        // connection's small lookaside pool, which kept statements would otherwise hold.
        let flags = cache == nil ? 0 : UInt32(SQLITE_PREPARE_PERSISTENT)
        let rc = sqlite3_prepare_v3(connection, sql, -1, flags, &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw StoreError(code: rc, message: String(cString: sqlite3_errmsg(connection)), context: sql)
        }
        self.handle = statement
        keptBytes = nil
    }

    deinit {
        if let cache { cache.keep(handle, sql: sql, bytes: keptBytes) } else { sqlite3_finalize(handle) }
    }

    // SQLite copies text and blobs bound with SQLITE_TRANSIENT before returning.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func bind(_ values: [SQLValue]) throws {
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .integer(let v): rc = sqlite3_bind_int64(handle, index, v)
            case .real(let v): rc = sqlite3_bind_double(handle, index, v)
            case .text(var v):
                // With its length, not up to its first NUL.
                rc = v.withUTF8 { bytes in
                    guard let start = bytes.baseAddress, !bytes.isEmpty else { return sqlite3_bind_text(handle, index, "", 0, Self.transient) }
                    return start.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                        sqlite3_bind_text(handle, index, $0, Int32(bytes.count), Self.transient)
                    }
                }
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), Self.transient) }
            case .null: rc = sqlite3_bind_null(handle, index)
            }
            guard rc == SQLITE_OK else {
                throw StoreError(code: rc, message: String(cString: sqlite3_errmsg(connection)), context: "bind \(index) of \(sql)")
            }
        }
    }

    /// true while a row is ready, false when done.
    func step() throws -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let rc: throw StoreError(code: rc, message: String(cString: sqlite3_errmsg(connection)), context: sql)
        }
    }
}

/// Prepared statements of one connection, kept for the next run of the same SQL, used only
/// while that connection's lock is held.
///
/// Preparing the task upsert (twenty columns, an upsert clause and the finish-order triggers)
/// took 70 µs of the writer's thread, three times per task: most of the writer's time per task
/// in benchmarks/tasks.sh. Kept, it costs about 39 KB, so the cache is bounded by the bytes
/// SQLite reports for its statements, not by their count; past `byteLimit` the least recently
/// used go (the lead's writer keeps about 64 KB). A statement is taken out while it runs, so a nested run of the same SQL prepares a
/// second one instead of resetting the first under its caller.
final class StatementCache {
    /// Counted in the lead's private memory, whose budget at 100 agents is 4 MiB (DESIGN.md §10).
    static let byteLimit = 128 * 1024

    private struct Entry {
        var handle: OpaquePointer
        var bytes: Int
        var lastUse: UInt64
    }

    private var entries: [String: Entry] = [:]
    private var uses: UInt64 = 0
    let byteLimit: Int
    private(set) var bytes = 0

    init(byteLimit: Int = StatementCache.byteLimit) {
        self.byteLimit = byteLimit
    }

    var count: Int { entries.count }

    /// The statement kept for `sql`, and the bytes it was counted for, now out of the cache.
    func take(_ sql: String) -> (OpaquePointer, bytes: Int)? {
        guard let entry = entries.removeValue(forKey: sql) else { return nil }
        bytes -= entry.bytes
        return (entry.handle, entry.bytes)
    }

    /// Takes back a statement after its run: reset (a SELECT left mid-way would hold a read
    /// transaction open) and its values cleared (a bound payload would stay in memory). Its
    /// size is asked of SQLite once, when it is first kept: the count walks the whole statement.
    func keep(_ handle: OpaquePointer, sql: String, bytes counted: Int? = nil) {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        let size = counted ?? Int(sqlite3_stmt_status(handle, SQLITE_STMTSTATUS_MEMUSED, 0))
        guard size <= byteLimit, entries[sql] == nil else {
            sqlite3_finalize(handle)
            return
        }
        while bytes + size > byteLimit, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            entries[oldest.key] = nil
            bytes -= oldest.value.bytes
            sqlite3_finalize(oldest.value.handle)
        }
        uses += 1
        entries[sql] = Entry(handle: handle, bytes: size, lastUse: uses)
        bytes += size
    }

    /// Finalizes every statement: before the connection closes, which would otherwise wait for them.
    func removeAll() {
        for entry in entries.values { sqlite3_finalize(entry.handle) }
        entries.removeAll()
        bytes = 0
    }
}
