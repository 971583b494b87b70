import CSQLite
import Glibc

/// Copies and checks database files without the lead's connection: a read-only connection of
/// its own, so that `pimesh snapshot` works beside a running lead (WAL readers do not block the
/// writer) and without one.
public enum DatabaseCopy {
    /// `VACUUM INTO`: a consistent, compacted copy as of one read transaction (sqlite.org/lang_vacuum.html).
    /// Returns the copy's schema version.
    @discardableResult
    public static func vacuum(_ source: String, into destination: String) throws -> Int {
        try withReadOnly(source) { handle in
            try execute(handle, "VACUUM INTO '\(destination.replacing("'", with: "''"))'", context: "VACUUM INTO \(destination)")
            return try userVersion(handle)
        }
    }

    /// `PRAGMA integrity_check`: "ok", or what is wrong.
    public static func integrityCheck(_ path: String) throws -> String {
        try withReadOnly(path) { handle in
            var statement: OpaquePointer?
            guard sqlite3_prepare_v2(handle, "PRAGMA integrity_check", -1, &statement, nil) == SQLITE_OK else {
                throw StoreError(code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), context: "integrity_check")
            }
            defer { sqlite3_finalize(statement) }
            var lines: [String] = []
            while sqlite3_step(statement) == SQLITE_ROW {
                lines.append(String(cString: sqlite3_column_text(statement, 0)))
            }
            guard !lines.isEmpty else {
                throw StoreError(code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), context: "integrity_check")
            }
            return lines.joined(separator: "; ")
        }
    }

    /// Folds a WAL database's journal into its main file (`wal_checkpoint(TRUNCATE)`) and closes
    /// it; the last connection to close deletes the journal. False when another connection
    /// still has the database open: its journal is still there.
    public static func checkpointAndClose(_ path: String) throws -> Bool {
        let handle = try SQLiteLibrary.open(path, flags: SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, context: "open \(path)")
        sqlite3_busy_timeout(handle, 5000)
        do {
            try execute(handle, "PRAGMA wal_checkpoint(TRUNCATE)", context: "checkpoint \(path)")
        } catch {
            sqlite3_close_v2(handle)
            throw error
        }
        sqlite3_close_v2(handle)
        return access(path + "-wal", F_OK) != 0
    }

    public static func schemaVersion(_ path: String) throws -> Int {
        try withReadOnly(path, userVersion)
    }

    private static func withReadOnly<T>(_ path: String, _ body: (OpaquePointer) throws -> T) throws -> T {
        let handle = try SQLiteLibrary.open(path, flags: SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, context: "open \(path) read-only")
        defer { sqlite3_close_v2(handle) }
        sqlite3_busy_timeout(handle, 5000)
        return try body(handle)
    }

    private static func execute(_ handle: OpaquePointer, _ sql: String, context: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(error)
            throw StoreError(code: rc, message: message, context: context)
        }
    }

    private static func userVersion(_ handle: OpaquePointer) throws -> Int {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, "PRAGMA user_version", -1, &statement, nil) == SQLITE_OK else {
            throw StoreError(code: sqlite3_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), context: "user_version")
        }
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW else { return 0 }
        return Int(sqlite3_column_int64(statement, 0))
    }
}
