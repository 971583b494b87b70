import CSQLite

/// Every connection of the process opens here: SQLite takes its process-wide settings only
/// before the first connection, and one place for the open keeps that true.
enum SQLiteLibrary {
    /// SQLITE_OK once the settings took; anything else means SQLite had started before them.
    static let configured: Int32 = pimesh_sqlite3_page_cache_without_bulk()

    /// Opens `path` with `flags`; on failure the handle is closed and the error names `context`.
    static func open(_ path: String, flags: Int32, context: String) throws -> OpaquePointer {
        _ = configured
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw StoreError(code: rc, message: message, context: context)
        }
        return handle
    }
}
