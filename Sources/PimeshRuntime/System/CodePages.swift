import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import ServiceLifecycle

/// Keeps the lead's resident code closer to what it runs. Dropping the executable pages once
/// start-up is over lets only the code that keeps running fault back in (docs/benchmarks.md).
/// The kernel still maps up to 64 KiB of cached pages around each fault ("fault-around"):
/// advising random access does not turn that off (measured on 6.18), it only stops the
/// read-ahead of a page that was evicted, so that a Pi's SD card reads what is needed.
public enum CodePages {
    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var executable: Bool
        var writable: Bool
        var offset: UInt = 0

        /// Pages that are clean copies of the file, so that dropping them loses nothing: the
        /// code, and the read-only segment at the file's start (headers, read-only data, type
        /// metadata). The other read-only mapping is the RELRO segment, written by the dynamic
        /// loader before it was made read-only: dropping it would undo its relocations.
        var isCleanFileCopy: Bool {
            !writable && (executable || offset == 0)
        }
    }

    /// The mappings of `path` in a /proc/<pid>/maps text.
    static func mappings(of path: String, in maps: String) -> [Mapping] {
        maps.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5].trimmingWhitespace() == path else { return nil }
            let bounds = fields[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start,
                let offset = UInt(fields[2], radix: 16)
            else { return nil }
            let permissions = Array(fields[1].utf8)
            guard permissions.count >= 3 else { return nil }
            return Mapping(
                start: start, end: end, executable: permissions[2] == UInt8(ascii: "x"),
                writable: permissions[1] == UInt8(ascii: "w"), offset: offset)
        }
    }

    static func ownMappings() -> [Mapping] {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0, let maps = try? FileIO.readText(path: "/proc/self/maps") else { return [] }
        let exe = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return mappings(of: exe, in: maps)
    }

    /// How often the trim service looks whether a trim is due: a trim falls within
    /// `node.code_trim_interval_s` plus this of the one before it (`pimesh bench run --settle`).
    public static let trimCheckEvery: Duration = .seconds(5)

    /// No read-ahead when a page of the binary comes back from storage. Returns the bytes advised.
    @discardableResult
    public static func adviseRandomAccess() -> Int {
        var advised = 0
        for mapping in ownMappings() {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_RANDOM) == 0 { advised += length }
        }
        return advised
    }

    /// Unmaps the binary's code and read-only data; the pages still in use fault back in from
    /// the page cache, one page at a time. Only mappings whose pages are clean copies of the
    /// file are touched (the binary has no text relocations), so nothing is lost.
    @discardableResult
    public static func dropIdleCode() -> Int {
        var dropped = 0
        for mapping in ownMappings() where mapping.isCleanFileCopy {
            let length = Int(mapping.end - mapping.start)
            if madvise(UnsafeMutableRawPointer(bitPattern: mapping.start), length, MADV_DONTNEED) == 0 { dropped += length }
        }
        return dropped
    }
}

/// Drops idle code pages on an interval, so that code run once in a while (a status call, a
/// snapshot) does not stay mapped, and as soon as a burst of registrations is over: a fleet
/// that starts together registers hundreds of agents, and the code that did it is not needed
/// again (measured at 1,000 agents: 30.5 MiB of PSS before the first trim, 26 after). Pages
/// still in use fault back in from the page cache: a few thousand minor faults per trim.
struct CodeTrimService: Service {
    let interval: Duration
    /// The count of registered agents: a change, then none for one check, ends a burst.
    let agentCount: @Sendable () -> Int
    static let settleCheck = CodePages.trimCheckEvery

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var lastTrim = Clock.monotonicNow()
            var seen = agentCount()
            var burstOver = false
            while true {
                try await Task.sleep(for: min(Self.settleCheck, interval))
                let count = agentCount()
                let changed = count != seen
                seen = count
                if changed { burstOver = true }
                // The interval holds whatever the count does: steady churn must not put it off.
                if (burstOver && !changed) || Clock.monotonicNow() - lastTrim >= interval {
                    CodePages.dropIdleCode()
                    lastTrim = Clock.monotonicNow()
                    // A trim in the middle of a burst does not stand for the one after it.
                    if !changed { burstOver = false }
                }
            }
        }
    }
}
