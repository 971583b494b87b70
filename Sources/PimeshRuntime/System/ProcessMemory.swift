import CMalloc
import PimeshAgent
import PimeshSystem

/// The lead's own memory from `/proc/<pid>/smaps_rollup` (DESIGN.md §10): RSS, PSS (shared
/// pages divided among their users, comparable with peers) and private anonymous memory
/// (what the Pi cannot reclaim).
public struct ProcessMemory: Sendable, Equatable {
    public var rssBytes: UInt64 = 0
    public var pssBytes: UInt64 = 0
    public var anonymousBytes: UInt64 = 0

    public init(rssBytes: UInt64 = 0, pssBytes: UInt64 = 0, anonymousBytes: UInt64 = 0) {
        self.rssBytes = rssBytes
        self.pssBytes = pssBytes
        self.anonymousBytes = anonymousBytes
    }

    public static func read(procRoot: String = "/proc", pid: String = "self") -> ProcessMemory? {
        guard let content = try? FileIO.readText(path: "\(procRoot)/\(pid)/smaps_rollup") else { return nil }
        return parse(content)
    }

    public static func parse(_ content: String) -> ProcessMemory {
        var memory = ProcessMemory()
        for line in content.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kilobytes = UInt64(parts[1]) else { continue }
            switch parts[0] {
            case "Rss:": memory.rssBytes = kilobytes * 1024
            case "Pss:": memory.pssBytes = kilobytes * 1024
            case "Anonymous:": memory.anonymousBytes = kilobytes * 1024
            default: break
            }
        }
        return memory
    }
}

extension ProcessMemory {
    /// glibc gives threads up to eight malloc arenas per core (two on 32-bit), and an arena
    /// keeps the pages it once used. The lead's threads mostly wait (event loops, the store
    /// writer, the heartbeat reader): with 100 swarm agents its private memory read 4,224-4,276
    /// KiB with the default and 4,056-4,088 with two (docs/benchmarks.md). One arena read
    /// lower still (4,032-4,048) but would put every thread behind one lock; what two cost in
    /// contention is below what benchmarks/tasks.sh can tell from its noise. New threads share
    /// the arenas that exist and made ones stay, so `pimesh run` sets it before any thread
    /// but the main one allocates (Pimesh.main).
    public static let mallocArenas: Int32 = 2

    public static func limitMallocArenas() {
        _ = mallopt(M_ARENA_MAX, mallocArenas)
    }
}
