import CSQLite
import Glibc

extension Database {
    /// The directory that holds the database, its WAL and its index: what fills up.
    public var directory: String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Bytes free for writing on the file system that holds the database, as `df` shows them
    /// (statvfs's `f_bavail`). Root may use a few more, the blocks ext4 keeps back for it, but
    /// not all of `f_bfree`: counting those called a disk that refused root's writes "free".
    public var freeBytes: UInt64? {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0 else { return nil }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }

    /// Below this much free space an I/O error is taken for a full file system: SQLite says FULL
    /// when a write runs out of room, but an I/O error when growing the WAL index or syncing does.
    public static let nearlyFullBytes: UInt64 = 1 << 20

    /// Whether a failed statement is the file system running out of room.
    public func isOutOfSpace(_ error: any Error) -> Bool {
        guard let error = error as? StoreError else { return false }
        switch error.code & 0xff {
        case SQLITE_FULL: return true
        case SQLITE_IOERR, SQLITE_CANTOPEN: return (freeBytes ?? .max) < Self.nearlyFullBytes
        default: return false
        }
    }

    /// "the store is full (DIR has N bytes free)", for errors and logs.
    public var storeIsFull: String {
        "the store is full (\(directory) has \(freeBytes.map(String.init) ?? "an unknown number of") bytes free)"
    }
}
