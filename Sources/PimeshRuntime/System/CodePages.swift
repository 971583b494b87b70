import CLink
import Glibc
import PimeshCore
import PimeshSystem
import ServiceLifecycle

/// Keeps the lead's resident code closer to what it runs. Dropping the executable pages once
/// start-up is over lets only the code that keeps running fault back in (docs/benchmarks.md).
/// The kernel still maps up to 64 KiB of cached pages around each fault ("fault-around"):
/// advising random access does not turn that off (measured on 6.18), it only stops the
/// read-ahead of a page that was evicted, so that a Pi's SD card reads what is needed.
///
/// The libraries count too: SQLite's code runs at a checkpoint and NSS's module once at start,
/// yet both stayed mapped, in pages only the lead maps, so the read-only segments of every
/// loaded object are dropped, not only the binary's. For libraries other processes map as
/// well (libc, libstdc++) this mostly moves PSS onto them rather than freeing memory.
public enum CodePages {
    /// A loaded object as the dynamic loader reports it: where it sits and its program headers.
    struct LoadedObject {
        var name: String
        var base: UInt
        /// The loader wrote its read-only segments (DT_TEXTREL): none of it is a clean copy.
        var textRelocations = false
        var segments: [Segment]
    }

    struct Segment: Equatable {
        var type: UInt32
        var flags: UInt32
        var virtualAddress: UInt
        var fileSize: UInt
        var memorySize: UInt

        static let load: UInt32 = 1
        static let relocationReadOnly: UInt32 = 0x6474_e552  // PT_GNU_RELRO
        static let writable: UInt32 = 2  // PF_W
    }

    /// The address ranges of `objects` that hold clean copies of their files, whole pages only.
    /// A segment without write permission is never written, with one exception: the RELRO
    /// range, which the loader relocates before making it read-only, so its pages no longer
    /// match the file and dropping them would bring back unrelocated bytes. Ranges shrink to
    /// the pages that lie wholly inside a segment, so that a page shared with a neighbouring
    /// writable segment is never touched. An object with text relocations had its read-only
    /// segments written too, and is left whole. The vDSO is the kernel's, not a file.
    static func cleanRanges(of objects: [LoadedObject], pageSize: UInt) -> [Range<UInt>] {
        var ranges: [Range<UInt>] = []
        for object in objects
        where !object.textRelocations && !object.name.hasPrefix("linux-vdso") && !object.name.hasPrefix("linux-gate") {
            let written = object.segments.filter { $0.type == Segment.relocationReadOnly }.map {
                (object.base + $0.virtualAddress) / pageSize * pageSize..<roundUp(object.base + $0.virtualAddress + max($0.fileSize, $0.memorySize), pageSize)
            }
            for segment in object.segments where segment.type == Segment.load && segment.flags & Segment.writable == 0 {
                let start = roundUp(object.base + segment.virtualAddress, pageSize)
                let end = (object.base + segment.virtualAddress + segment.fileSize) / pageSize * pageSize
                guard end > start else { continue }
                ranges += subtract(written, from: start..<end)
            }
        }
        return ranges
    }

    private static func roundUp(_ value: UInt, _ pageSize: UInt) -> UInt {
        (value + pageSize - 1) / pageSize * pageSize
    }

    private static func subtract(_ holes: [Range<UInt>], from range: Range<UInt>) -> [Range<UInt>] {
        var pieces = [range]
        for hole in holes {
            pieces = pieces.flatMap { piece -> [Range<UInt>] in
                guard piece.overlaps(hole) else { return [piece] }
                return [piece.lowerBound..<max(piece.lowerBound, hole.lowerBound), min(piece.upperBound, hole.upperBound)..<piece.upperBound]
                    .filter { !$0.isEmpty }
            }
        }
        return pieces
    }

    /// Calls `body` for each object the dynamic loader has loaded, the binary first, while the
    /// loader's lock holds it in place: an object another thread unloads (a dlopen that fails
    /// half-way) cannot leave its addresses to a new mapping before `body` is done with them.
    /// `body` must not load or unload objects.
    private static func forEachLoadedObject(_ body: (LoadedObject) -> Void) {
        final class Visitor {
            let body: (LoadedObject) -> Void
            init(_ body: @escaping (LoadedObject) -> Void) { self.body = body }
        }
        withoutActuallyEscaping(body) { body in
            let visitor = Visitor(body)
            withExtendedLifetime(visitor) {
                _ = pimesh_visit_loaded_objects({ context, object in
                    guard let context, let object = object?.pointee else { return }
                    let segments = UnsafeBufferPointer(start: object.segments, count: object.segment_count).map {
                        Segment(
                            type: $0.type, flags: $0.flags, virtualAddress: $0.virtual_address,
                            fileSize: $0.file_size, memorySize: $0.memory_size)
                    }
                    Unmanaged<Visitor>.fromOpaque(context).takeUnretainedValue().body(
                        LoadedObject(
                            name: String(cString: object.name), base: object.base,
                            textRelocations: object.text_relocations != 0, segments: segments))
                }, Unmanaged.passUnretained(visitor).toOpaque())
            }
        }
    }

    /// The objects the dynamic loader has loaded into this process, the binary first.
    static func loadedObjects() -> [LoadedObject] {
        var objects: [LoadedObject] = []
        forEachLoadedObject { objects.append($0) }
        return objects
    }

    /// How often the trim service looks whether a trim is due: a trim falls within
    /// `node.code_trim_interval_s` plus this of the one before it (`pimesh bench run --settle`).
    public static let trimCheckEvery: Duration = .seconds(5)

    /// No read-ahead when a page of code comes back from storage. Returns the bytes advised.
    @discardableResult
    public static func adviseRandomAccess() -> Int {
        advise(MADV_RANDOM)
    }

    /// Unmaps the clean pages of every loaded object: the binary's code and read-only data, and
    /// the libraries'. The pages still in use fault back in from the page cache, one
    /// fault-around window at a time. Returns the bytes dropped.
    @discardableResult
    public static func dropIdleCode() -> Int {
        advise(MADV_DONTNEED)
    }

    private static func advise(_ advice: Int32) -> Int {
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        var advised = 0
        forEachLoadedObject { object in
            for range in cleanRanges(of: [object], pageSize: pageSize) {
                let length = Int(range.upperBound - range.lowerBound)
                if madvise(UnsafeMutableRawPointer(bitPattern: range.lowerBound), length, advice) == 0 { advised += length }
            }
        }
        return advised
    }
}

/// Drops idle code pages and malloc's free pages on an interval, so that code run once in a
/// while (a status call, a snapshot) does not stay mapped, and as soon as a burst of
/// registrations is over: a fleet that starts together registers hundreds of agents, and the
/// code that did it is not needed again (measured at 1,000 agents: 30.5 MiB of PSS before the
/// first trim, 26 after). Pages still in use fault back in from the page cache: a few thousand
/// minor faults per trim.
struct CodeTrimService: Service {
    let interval: Duration
    /// The count of registered agents: a change, then none for one check, ends a burst.
    let agentCount: @Sendable () -> Int
    static let settleCheck = CodePages.trimCheckEvery

    /// Gives back what the lead holds but does not use. The heap first, so that the code
    /// malloc_trim ran is dropped with the rest.
    static func trim() {
        MallocTuning.returnFreePages()
        CodePages.dropIdleCode()
    }

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
                    Self.trim()
                    lastTrim = Clock.monotonicNow()
                    // A trim in the middle of a burst does not stand for the one after it.
                    if !changed { burstOver = false }
                }
            }
        }
    }
}
