import CSQLite

/// Process-wide SQLite settings, which SQLite accepts only before its first connection opens.
enum SQLiteLibrary {
    private static let configured: Int32 = pimesh_sqlite3_page_cache_without_bulk()

    /// Call before opening any connection; later calls do nothing.
    static func configure() {
        _ = configured
    }
}
