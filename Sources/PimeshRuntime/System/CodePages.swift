import Glibc
import PimeshAgent
import PimeshSystem
import ServiceLifecycle

/// Keeps the lead's resident code to what it runs. The kernel maps up to 64 KiB around each
/// page fault in a file mapping ("fault-around"), so a lead that touches a little code in many
/// places ends up with most of its 28 MB binary mapped: measured 21.5 MiB of PSS for the binary
/// alone with 100 agents. Advising random access turns fault-around off for the binary's own
/// mappings, and dropping the executable pages once start-up is over lets only the code that
/// keeps running fault back in (docs/benchmarks.md).
public enum CodePages {
    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var executable: Bool
        var writable: Bool
    }

    /// The mappings of `path` in a /proc/<pid>/maps text.
    static func mappings(of path: String, in maps: String) -> [Mapping] {
        maps.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5].trimmingWhitespace() == path else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start
            else { return nil }
            let permissions = Array(fields[1].utf8)
            guard permissions.count >= 3 else { return nil }
            return Mapping(
                start: start, end: end, executable: permissions[2] == UInt8(ascii: "x"),
                writable: permissions[1] == UInt8(ascii: "w"))
        }
    }

    static func ownMappings() -> [Mapping] {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0, let maps = try? FileIO.readText(path: "/proc/self/maps") else { return [] }
        let exe = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return mappings(of: exe, in: maps)
    }

    /// Turns fault-around off for the binary's mappings. Returns the bytes advised.
    @discardableResult
    public static func adviseRandomAccess() -> Int {
        var advised = 0
        for mapping in ownMappings() {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_RANDOM) == 0 { advised += length }
        }
        return advised
    }

    /// Unmaps the binary's executable pages; those still in use fault back in from the page
    /// cache, one page at a time. Only read-only executable mappings are touched: their pages
    /// are clean copies of the file (the binary has no text relocations), so nothing is lost.
    @discardableResult
    public static func dropIdleCode() -> Int {
        var dropped = 0
        for mapping in ownMappings() where mapping.executable && !mapping.writable {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_DONTNEED) == 0 { dropped += length }
        }
        return dropped
    }
}

/// Drops idle code pages on an interval, so that code run once in a while (a burst of
/// registrations, a status call) does not stay mapped. Pages still in use fault back in from
/// the page cache: about a thousand minor faults, a few milliseconds, per trim.
struct CodeTrimService: Service {
    let interval: Duration

    func run() async throws {
        await repeatUntilGracefulShutdown(every: interval) { CodePages.dropIdleCode() }
    }
}
