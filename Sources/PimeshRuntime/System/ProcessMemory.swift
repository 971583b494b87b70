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
