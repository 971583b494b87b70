import Glibc
import PimeshAgent
import PimeshSnapshot
import PimeshSystem

/// A lost database is never silently replaced (issue 13). A data dir that has run a lead before
/// (it holds the node key, or snapshots in its spool) but whose `pimesh.db` is missing, empty or
/// not a SQLite database makes the lead refuse to start, naming the file and how to bring the
/// state back; an empty new database would forget every agent, secret and task without a word.
enum LostDatabase {
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    static let sqliteHeader = Array("SQLite format 3\u{0}".utf8)

    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func check(dataDir: String) throws {
        let path = dataDir + "/pimesh.db"
        let spool = dataDir + "/spool"
        let snapshots = ((try? FileIO.list(spool)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
        let usedBefore = FileIO.exists(dataDir + "/" + NodeKey.fileName) || !snapshots.isEmpty
        guard usedBefore else { return }
        var info = stat()
        let problem: String
        if lstat(path, &info) != 0 {
            guard errno == ENOENT else { return }
            problem = "is missing"
        } else if info.st_size == 0 {
            problem = "is empty (0 bytes)"
        } else if let head = firstBytes(of: path, count: sqliteHeader.count), head != sqliteHeader {
            problem = "is not a SQLite database"
        } else {
            return
        }
        let restore = snapshots.last.map { "pimesh snapshot restore \(spool)/\($0) --to NEW_DIR --data-dir \(dataDir)" }
            ?? "pimesh snapshot restore SNAPSHOT.json --to NEW_DIR --data-dir \(dataDir)"
        let source = snapshots.isEmpty ? " (SNAPSHOT.json from the coordinator's archive)" : ""
        throw Refusal(
            description: "\(path) \(problem), but this data dir has run a lead before (its node key"
                + (snapshots.isEmpty ? "" : " and \(snapshots.count) snapshot(s) in \(spool)")
                + " are here): starting would replace every agent, secret and task with an empty database. "
                + "Bring the state back with `\(restore)`\(source), then move NEW_DIR/pimesh.db to \(path); "
                + "or, to start over on purpose, move the data dir away")
    }

    private static func firstBytes(of path: String, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let read = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count) }
        return read < 0 ? nil : Array(bytes[0..<read])
    }
}
