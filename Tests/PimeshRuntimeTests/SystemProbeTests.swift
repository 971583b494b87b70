import Glibc
import PimeshAgent
import PimeshSystem
import Testing
import PimeshTestSupport

@testable import PimeshRuntime

@Suite struct SystemProbeTests {
    func fakeTree() throws -> String {
        let root = Scratch.directory("pimesh-proc")
        for directory in ["proc/pressure", "sys/class/thermal/thermal_zone0", "sys/class/thermal/thermal_zone1", "sys/class/thermal/cooling_device0", "sys/devices/system/cpu"] {
            try FileIO.makeDirectories(root + "/" + directory)
        }
        let files = [
            "proc/loadavg": "1.50 0.80 0.40 2/345 6789\n",
            "proc/pressure/cpu": "some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "proc/pressure/memory": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "proc/meminfo": "MemTotal:        3884340 kB\nMemFree:          100000 kB\nMemAvailable:     388434 kB\n",
            "sys/class/thermal/thermal_zone0/temp": "52300\n",
            "sys/class/thermal/thermal_zone1/temp": "61850\n",
            "sys/devices/system/cpu/online": "0-3\n",
        ]
        for (path, content) in files {
            try FileIO.writeAtomically(path: root + "/" + path, bytes: Array(content.utf8))
        }
        return root
    }

    @Test func readsAPiLikeTree() throws {
        let root = try fakeTree()
        let readings = NodeProbe(procRoot: root + "/proc", sysRoot: root + "/sys").read()
        #expect(readings.cpuCount == 4)
        #expect(readings.loadAverage == 1.5)
        #expect(readings.cpuPressure == 12.5)
        #expect(readings.memoryPressure == 0)
        #expect(readings.ioPressure == nil)  // no io file in this tree
        #expect(readings.memoryTotalBytes == 3_884_340 * 1024)
        #expect(readings.memoryAvailableBytes == 388_434 * 1024)
        #expect(readings.temperatureCelsius == 61.85)
    }

    @Test func missingTreeGivesNilReadingsNotErrors() {
        let readings = NodeProbe(procRoot: "/nonexistent/proc", sysRoot: "/nonexistent/sys").read()
        #expect(readings.cpuCount >= 1)
        #expect(readings.loadAverage == nil && readings.cpuPressure == nil && readings.temperatureCelsius == nil)
        #expect(readings.underVoltage == nil && readings.throttled == nil && readings.leadWrittenBytes == nil)
    }

    /// The Pi's power state, from the firmware's word where the kernel offers it, else from
    /// `raspberrypi-hwmon`; the lead's own writes from `/proc/self/io`.
    @Test func underVoltageThrottlingAndOwnWritesFromAPiLikeTree() throws {
        let root = try fakeTree()
        try FileIO.makeDirectories(root + "/sys/class/hwmon/hwmon0")
        try FileIO.makeDirectories(root + "/sys/class/hwmon/hwmon1")
        try FileIO.makeDirectories(root + "/proc/self")
        try FileIO.writeAtomically(path: root + "/sys/class/hwmon/hwmon0/name", bytes: Array("cpu_thermal\n".utf8))
        try FileIO.writeAtomically(path: root + "/sys/class/hwmon/hwmon1/name", bytes: Array("rpi_volt\n".utf8))
        try FileIO.writeAtomically(path: root + "/sys/class/hwmon/hwmon1/in0_lcrit_alarm", bytes: Array("1\n".utf8))
        try FileIO.writeAtomically(
            path: root + "/proc/self/io", bytes: Array("rchar: 100\nwchar: 200\nwrite_bytes: 4096000\ncancelled_write_bytes: 0\n".utf8))
        var readings = NodeProbe(procRoot: root + "/proc", sysRoot: root + "/sys").read()
        #expect(readings.underVoltage == true && readings.throttled == nil, "hwmon says only under-voltage")
        #expect(readings.leadWrittenBytes == 4_096_000)
        // The firmware's word wins where it exists: 0x50005 = under-voltage and throttled now,
        // both since boot too.
        try FileIO.makeDirectories(root + "/sys/devices/platform/soc/soc:firmware")
        try FileIO.writeAtomically(path: root + "/sys/devices/platform/soc/soc:firmware/get_throttled", bytes: Array("50005\n".utf8))
        readings = NodeProbe(procRoot: root + "/proc", sysRoot: root + "/sys").read()
        #expect(readings.underVoltage == true && readings.throttled == true && readings.frequencyCapped == false)
        #expect(readings.underVoltageSinceBoot == true)
        try FileIO.writeAtomically(path: root + "/sys/devices/platform/soc/soc:firmware/get_throttled", bytes: Array("0x0\n".utf8))
        readings = NodeProbe(procRoot: root + "/proc", sysRoot: root + "/sys").read()
        #expect(readings.underVoltage == false && readings.throttled == false && readings.underVoltageSinceBoot == false)
    }

    @Test func smapsRollupParses() {
        let memory = ProcessMemory.parse(
            """
            55d0c0de0000-7ffc0de00000 ---p 00000000 00:00 0                          [rollup]
            Rss:               14336 kB
            Pss:               11264 kB
            Pss_Anon:           2048 kB
            Anonymous:          2048 kB
            """)
        #expect(memory == ProcessMemory(rssBytes: 14336 * 1024, pssBytes: 11264 * 1024, anonymousBytes: 2048 * 1024))
        #expect(ProcessMemory.read() != nil)
    }

    /// Free pages between chunks still in use stay resident until the lead's periodic trim.
    @Test func freedHeapPagesGoBackToTheKernel() throws {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let chunkBytes = 8 * 1024
        // A chunk's distance from the next: the request and malloc's 8-byte size field, rounded up.
        let chunkStride = (chunkBytes + 8 + 15) & ~15
        let chunks = (0..<256).map { _ in malloc(chunkBytes)! }.sorted { UInt(bitPattern: $0) < UInt(bitPattern: $1) }
        var inUse = Set(chunks)
        defer { for chunk in inUse { free(chunk) } }
        for chunk in chunks { memset(chunk, 0xa5, chunkBytes) }
        // The longest run of chunks side by side (another thread may have taken some in between).
        var longest = 0..<1
        var runStart = 0
        for i in 1..<chunks.count {
            if Int(bitPattern: chunks[i]) - Int(bitPattern: chunks[i - 1]) != chunkStride { runStart = i }
            if i + 1 - runStart > longest.count { longest = runStart..<(i + 1) }
        }
        try #require(longest.count > 32, "malloc placed at most \(longest.count) of 256 chunks side by side")
        // The run's last chunk stays in use, and so do the chunks outside it: the free space is
        // then not the heap's top, which glibc would give back by itself.
        let freed = Array(chunks[longest].dropLast())
        // Clear of the first chunk's header and of the free chunk's links.
        let start = (Int(bitPattern: freed[0]) + 2 * pageSize) & ~(pageSize - 1)
        let length = (freed.count * chunkStride - 4 * pageSize) & ~(pageSize - 1)
        func residentPages() -> Int {
            var vector = [UInt8](repeating: 0, count: length / pageSize)
            #expect(mincore(UnsafeMutableRawPointer(bitPattern: start), length, &vector) == 0)
            return vector.filter { $0 & 1 != 0 }.count
        }
        #expect(residentPages() == length / pageSize)
        for chunk in freed {
            free(chunk)
            inUse.remove(chunk)
        }
        // free() leaves pages between chunks in use where they are: the trim is what returns them.
        #expect(residentPages() == length / pageSize)
        #expect(MallocTuning.returnFreePages())
        #expect(residentPages() < length / pageSize / 2)
    }

    @Test func theOperatorsArenaSettingWins() {
        #expect(!MallocTuning.arenasSetByOperator(tunables: nil, arenaVariable: nil))
        #expect(!MallocTuning.arenasSetByOperator(tunables: "glibc.malloc.tcache_count=0", arenaVariable: ""))
        #expect(MallocTuning.arenasSetByOperator(tunables: nil, arenaVariable: "4"))
        #expect(MallocTuning.arenasSetByOperator(tunables: "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4", arenaVariable: nil))
        #expect(!MallocTuning.arenasSetByOperator(tunables: "glibc.malloc.arena_max_x=4", arenaVariable: nil))
    }

    @Test func mallocTunablesSizeTheThreadCachesAndKeepTheOperatorsOwn() {
        #expect(MallocTuning.tunables(addingTo: nil) == "glibc.malloc.tcache_count=1")
        #expect(MallocTuning.tunables(addingTo: "") == "glibc.malloc.tcache_count=1")
        #expect(MallocTuning.tunables(addingTo: "glibc.malloc.trim_threshold=131072") == "glibc.malloc.trim_threshold=131072:glibc.malloc.tcache_count=1")
        // The operator's own size wins, and so no second exec follows the first.
        #expect(MallocTuning.tunables(addingTo: "glibc.malloc.tcache_count=3") == nil)
        #expect(MallocTuning.tunables(addingTo: "glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0") == nil)
        // A longer name that starts with it is not it.
        #expect(MallocTuning.tunables(addingTo: "glibc.malloc.tcache_count_x=1") == "glibc.malloc.tcache_count_x=1:glibc.malloc.tcache_count=1")
        for before in [nil, "", "glibc.malloc.trim_threshold=131072", "=odd"] as [String?] {
            #expect(MallocTuning.restored(MallocTuning.saved(before)) == before)
        }
    }

    @Test func systemdNotifierIsSilentWithoutSocket() {
        #expect(!SystemdNotifier(environment: [:]).notify("READY=1"))
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "2000000"]).watchdogInterval == .seconds(1))
    }

    @Test func systemdNotifierReachesAnAbstractSocket() throws {
        let name = "@pimesh-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        #expect(try LocalAddress.unix(path: name).withSockaddr { bind(fd, $0, $1) } == 0)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": name]).notify("WATCHDOG=1"))
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(String(decoding: buffer.prefix(max(0, n)), as: UTF8.self) == "WATCHDOG=1")
    }

    @Test func systemdNotifierSendsToTheSocket() throws {
        let directory = Scratch.directory("pimesh-notify")
        let path = directory + "/notify.sock"
        // sun_path holds 107 bytes and a NUL: a long $TMPDIR must fail here, not overrun it.
        try #require(path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": path]).notify("READY=1"))
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        #expect(n == 7)
        #expect(String(decoding: buffer.prefix(max(0, n)), as: UTF8.self) == "READY=1")
    }
}

@Suite struct CodePagesTests {
    typealias Segment = CodePages.Segment
    static let page: UInt = 4096

    static func load(_ vaddr: UInt, _ size: UInt, writable: Bool = false) -> Segment {
        Segment(type: Segment.load, flags: writable ? 6 : 4, virtualAddress: vaddr, fileSize: size, memorySize: size)
    }

    /// The release binary's program headers (readelf -lW .build/release/pimesh, lld's layout):
    /// read-only data, code, the RELRO segment, data.
    @Test func dropsTheReadOnlySegmentsButNeverTheRelocatedOnes() {
        let base: UInt = 0x5561_6199_9000
        let binary = CodePages.LoadedObject(
            name: "", base: base,
            segments: [
                Self.load(0, 0x33_fa6a),
                Segment(type: Segment.load, flags: 5, virtualAddress: 0x34_0a80, fileSize: 0x136_0780, memorySize: 0x136_0780),
                Segment(type: Segment.load, flags: 6, virtualAddress: 0x16a_2200, fileSize: 0xc_2108, memorySize: 0xc_2e00),
                Self.load(0x176_5308, 0x7_6cf8, writable: true),
                Segment(type: Segment.relocationReadOnly, flags: 4, virtualAddress: 0x16a_2200, fileSize: 0xc_2108, memorySize: 0xc_2e00),
            ])
        let ranges = CodePages.cleanRanges(of: [binary], pageSize: Self.page)
        // Whole pages inside each read-only segment: the last page of the first segment is only
        // partly its own, and so is the first page of the code.
        #expect(ranges == [base..<base + 0x33_f000, base + 0x34_1000..<base + 0x16a_1000])
    }

    /// No linker puts RELRO in a segment without write permission today; if one did, its
    /// relocated pages would still be kept.
    @Test func keepsRelocatedPagesWhereverTheyAre() {
        let object = CodePages.LoadedObject(
            name: "/usr/lib/x86_64-linux-gnu/libexample.so.1", base: 0x7f00_0000_0000,
            segments: [
                Self.load(0, 0x10000),
                Segment(type: Segment.relocationReadOnly, flags: 4, virtualAddress: 0x4000, fileSize: 0x1800, memorySize: 0x1800),
            ])
        let ranges = CodePages.cleanRanges(of: [object], pageSize: Self.page)
        #expect(ranges == [0x7f00_0000_0000..<0x7f00_0000_4000, 0x7f00_0000_6000..<0x7f00_0001_0000])
    }

    /// Text relocations: the loader made the read-only segments writable and patched them.
    @Test func leavesAnObjectWithTextRelocationsWhole() {
        let object = CodePages.LoadedObject(
            name: "/opt/vendor/libold.so", base: 0x7f00_0000_0000, textRelocations: true, segments: [Self.load(0, 0x10000)])
        #expect(CodePages.cleanRanges(of: [object], pageSize: Self.page).isEmpty)
    }

    /// A 16 KiB kernel (a Raspberry Pi 5's): only pages wholly inside a read-only segment, never
    /// the one it shares with the writable segment after it, nor the tail past the file.
    @Test func keepsToWholePagesOfTheKernelsSize() {
        let page: UInt = 16384
        let object = CodePages.LoadedObject(
            name: "/usr/lib/aarch64-linux-gnu/libexample.so.1", base: 0x7f00_0000_0000,
            segments: [
                Segment(type: Segment.load, flags: 5, virtualAddress: 0, fileSize: 0x1_2345, memorySize: 0x1_2345),
                Segment(type: Segment.load, flags: 6, virtualAddress: 0x1_2345 + 0x100, fileSize: 0x800, memorySize: 0x5000),
                Segment(type: Segment.load, flags: 4, virtualAddress: 0x2_0000, fileSize: 0x9000, memorySize: 0xc000),
            ])
        #expect(
            CodePages.cleanRanges(of: [object], pageSize: page) == [
                0x7f00_0000_0000..<0x7f00_0001_0000, 0x7f00_0002_0000..<0x7f00_0002_8000,
            ])
    }

    @Test func leavesTheKernelsVDSOAndSegmentsSmallerThanAPage() {
        let vdso = CodePages.LoadedObject(name: "linux-vdso.so.1", base: 0x7fff_0000_0000, segments: [Self.load(0, 0x2000)])
        let tiny = CodePages.LoadedObject(name: "/lib/tiny.so", base: 0x7f00_0000_0000, segments: [Self.load(0x100, 0x800)])
        #expect(CodePages.cleanRanges(of: [vdso, tiny], pageSize: Self.page).isEmpty)
    }

    /// What the loader reports for this process: the test binary first, then its libraries,
    /// each with its program headers.
    @Test func findsEveryLoadedObject() {
        let objects = CodePages.loadedObjects()
        #expect(objects.first?.name == "")
        #expect(objects.contains { $0.name.contains("libc.so") && $0.segments.contains { $0.type == Segment.relocationReadOnly } })
    }

    @Test func droppingIdleCodeKeepsTheProcessWorking() throws {
        // The test binary's code and the libraries': dropped, then run again from the page cache.
        #expect(CodePages.adviseRandomAccess() > 0)
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let libraries = CodePages.cleanRanges(of: CodePages.loadedObjects().filter { $0.name.hasPrefix("/") }, pageSize: pageSize)
        let before = try Self.pages(in: libraries)
        #expect(CodePages.dropIdleCode() > 0)
        let after = try Self.pages(in: libraries)
        #expect(before.present > 0)
        #expect(after.present < before.present)
        #expect(ProcessMemory.parse("Rss: 1 kB").rssBytes == 1024)
    }

    /// What the rule selects is never a page the process wrote: every present page in it is
    /// the file's own (pagemap bit 61), not a private copy made by a write (a relocation).
    @Test func selectsOnlyPagesThatAreTheFilesOwn() throws {
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let everything = CodePages.cleanRanges(of: CodePages.loadedObjects(), pageSize: pageSize)
        #expect(!everything.isEmpty)
        let pages = try Self.pages(in: everything)
        #expect(pages.present > 0)
        #expect(pages.privateCopies == 0)
    }

    /// Pages of `ranges` mapped into this process (/proc/self/pagemap: bit 63 present, bit 61
    /// a page of the file rather than an anonymous copy).
    static func pages(in ranges: [Range<UInt>]) throws -> (present: Int, privateCopies: Int) {
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIO.Failure(path: "/proc/self/pagemap", operation: "open", errno: errno) }
        defer { close(fd) }
        var present = 0
        var privateCopies = 0
        for range in ranges {
            var entries = [UInt64](repeating: 0, count: Int((range.upperBound - range.lowerBound) / pageSize))
            let wanted = entries.count * 8
            let read = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(range.lowerBound / pageSize * 8)) }
            guard read == wanted else { throw FileIO.Failure(path: "/proc/self/pagemap", operation: "read", errno: errno) }
            for entry in entries where entry >> 63 == 1 {
                present += 1
                if entry >> 61 & 1 == 0 { privateCopies += 1 }
            }
        }
        return (present, privateCopies)
    }
}
