import CMalloc
import Glibc

/// How the lead tunes glibc's malloc for a process whose dozen threads mostly wait.
///
/// glibc gives every thread a cache of freed chunks (tcache: up to 7 of each size to 1 KiB)
/// that no other thread and no trim can use, and that keeps the pages under them from being
/// coalesced. With 100 swarm agents that take work it held about 245 KiB of the lead's private
/// memory (`pimesh bench run`: 4,001,792 bytes against 3,751,936 with none, docs/benchmarks.md),
/// past the 4 MB budget. Turned off, every malloc and free takes the one arena's lock
/// (`limitArenas`), and while tasks flow the lead's threads spent 11 % of its CPU waiting for and
/// waking each other on it. One chunk of each size per thread keeps most of the gain for about
/// 100 KiB: benchmarks/tasks.sh read 1,282-1,358 tasks/s against 1,025-1,238 with none and
/// 1,234-1,358 with 7. There is no mallopt for it: glibc reads it from `GLIBC_TUNABLES` as the
/// process starts, so `pimesh run` execs itself once with it set. The operator's own tunables
/// are kept, and one that names the tcache wins. After the exec the variable is put back as it
/// was, so that what the lead starts (release hooks) gets the environment the lead was given.
public enum MallocTuning {
    static let tunablesVariable = "GLIBC_TUNABLES"
    static let threadCacheTunable = "glibc.malloc.tcache_count"
    static let threadCacheCount = 1
    /// Set only across the exec: what GLIBC_TUNABLES was before it ("unset", or "=" + value).
    static let savedVariable = "PIMESH_GLIBC_TUNABLES_BEFORE"

    /// The GLIBC_TUNABLES that sizes the thread caches and keeps the rest; nil when the value
    /// already says how large they are.
    static func tunables(addingTo current: String?) -> String? {
        let setting = threadCacheTunable + "=" + String(threadCacheCount)
        guard let current, !current.isEmpty else { return setting }
        if tunableNames(current).contains(threadCacheTunable) { return nil }
        return current + ":" + setting
    }

    /// The names a GLIBC_TUNABLES value sets.
    static func tunableNames(_ value: String?) -> [String] {
        (value ?? "").split(separator: ":").map { $0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? "" }
    }

    static func saved(_ current: String?) -> String { current.map { "=" + $0 } ?? "unset" }

    /// What GLIBC_TUNABLES was before the exec, from the saved form; nil when it was unset.
    static func restored(_ saved: String) -> String? {
        saved.hasPrefix("=") ? String(saved.dropFirst()) : nil
    }

    /// Call first thing in `pimesh run`, before any thread: execs the binary again with the thread
    /// caches sized, or (in the exec'd process) restores the environment, then limits the arenas.
    /// Returns why it could not exec (the lead then runs with glibc's defaults).
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    public static func applyForLead(arguments: [String]) -> String? {
        var reason: String?
        if let saved = getenv(savedVariable).map({ String(cString: $0) }) {
            if let before = restored(saved) { setenv(tunablesVariable, before, 1) } else { unsetenv(tunablesVariable) }
            unsetenv(savedVariable)
        } else {
            let current = getenv(tunablesVariable).map { String(cString: $0) }
            if let tuned = tunables(addingTo: current) {
                setenv(savedVariable, saved(current), 1)
                setenv(tunablesVariable, tuned, 1)
                // /proc/self/exe is the binary this process runs, even if its path was replaced.
                var argv = arguments.map { strdup($0) } + [nil]
                execv("/proc/self/exe", &argv)
                reason = "cannot exec /proc/self/exe to size malloc's thread caches (\(String(cString: strerror(errno)))); running with glibc's defaults"
                for pointer in argv { free(pointer) }
                if let current { setenv(tunablesVariable, current, 1) } else { unsetenv(tunablesVariable) }
                unsetenv(savedVariable)
            }
        }
        limitArenas()
        return reason
    }

    /// glibc gives threads up to eight malloc arenas per core (two on 32-bit), and an arena
    /// keeps the pages it once used. In `pimesh bench run` at 100 agents, private memory read
    /// 4,026,368-4,034,560 bytes with two arenas and 3,985,408-3,989,504 with one. One arena puts
    /// every allocation behind one lock; benchmarks/tasks.sh and the bench's CPU at 1,000 agents
    /// did not tell one from two (docs/benchmarks.md). New threads share the arenas that exist
    /// and made ones stay, so this runs before any thread but the main one allocates.
    public static let arenas: Int32 = 1
    static let arenaTunable = "glibc.malloc.arena_max"
    static let arenaVariable = "MALLOC_ARENA_MAX"

    /// Whether the operator said how many arenas (glibc has read it by now): theirs wins.
    static func arenasSetByOperator(tunables: String?, arenaVariable: String?) -> Bool {
        if let arenaVariable, !arenaVariable.isEmpty { return true }
        return tunableNames(tunables).contains(arenaTunable)
    }

    static func limitArenas() {
        let tunables = getenv(tunablesVariable).map { String(cString: $0) }
        let variable = getenv(arenaVariable).map { String(cString: $0) }
        if arenasSetByOperator(tunables: tunables, arenaVariable: variable) { return }
        _ = mallopt(M_ARENA_MAX, arenas)
    }

    /// Gives the kernel back the whole free pages in malloc's heap. glibc returns a free top of
    /// the heap only above its trim threshold (128 KiB at first), and never the free pages
    /// between chunks in use, which a burst of registrations or a snapshot leaves behind.
    /// Returns whether any memory went back.
    @discardableResult
    public static func returnFreePages() -> Bool {
        malloc_trim(0) != 0
    }
}
