import Foundation
import FoundationXML
import PimeshAgent
import PimeshSystem
import Testing

@testable import PimeshSim

@Suite struct ProcFilesTests {
    @Test func cpuTimeIsUserPlusSystemCountedFromTheLastParenthesis() {
        // A command name with spaces and a ')' must not shift the fields.
        let stat = "4242 (pimesh (lead) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
        #expect(ProcessMeter.cpuSeconds(stat: stat, ticksPerSecond: 100) == 3.0)
        #expect(ProcessMeter.cpuSeconds(stat: "garbage", ticksPerSecond: 100) == nil)
    }

    @Test func writeBytesComeFromTheirOwnLine() {
        let io = "rchar: 100\nwchar: 200\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 81920\ncancelled_write_bytes: 0\n"
        #expect(ProcessMeter.writeBytes(io: io) == 81920)
        #expect(ProcessMeter.writeBytes(io: "rchar: 1\n") == nil)
    }

    @Test func figuresOverAWindowUseItsEndsForRatesAndItsPeakForMaxima() throws {
        func reading(pss: UInt64, anon: UInt64, cpu: Double, writes: UInt64, at: Double) -> ProcessMeter.Reading {
            .init(memory: .init(rssBytes: pss * 2, pssBytes: pss, anonymousBytes: anon), cpuSeconds: cpu, writeBytes: writes, monotonicSeconds: at)
        }
        let figures = try #require(
            ProcessFigures(samples: [
                reading(pss: 10, anon: 5, cpu: 1.0, writes: 0, at: 100), reading(pss: 30, anon: 9, cpu: 1.5, writes: 500, at: 105),
                reading(pss: 20, anon: 7, cpu: 2.0, writes: 1000, at: 110),
            ]))
        #expect(figures.pssBytes == 20)
        #expect(figures.pssMaxBytes == 30)
        #expect(figures.privateBytes == 7)
        #expect(figures.privateMaxBytes == 9)
        #expect(figures.cpuPercentOfCore == 10)  // 1 s of CPU in 10 s
        #expect(figures.storageWriteBytesPerHour == 360_000)  // 1000 bytes in 10 s
        #expect(ProcessFigures(samples: [reading(pss: 1, anon: 1, cpu: 0, writes: 0, at: 0)]) == nil)
    }
}

@Suite struct MachineInfoTests {
    @Test func cpuModelOfAnX86AndOfAPi() {
        #expect(MachineInfo.cpuModel(cpuinfo: "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n") == "Intel(R) Xeon(R) CPU @ 2.20GHz")
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
        #expect(MachineInfo.cpuModel(cpuinfo: pi) == "Raspberry Pi 4 Model B Rev 1.4")
        #expect(MachineInfo.cpuModel(cpuinfo: "") == nil)
    }

    @Test func storageIsTheLongestMountThatHoldsThePathAndItsDisksName() throws {
        let sys = NSTemporaryDirectory() + "pimesh-bench-sys-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: sys) }
        try FileManager.default.createDirectory(atPath: sys + "/class/block/mmcblk0/device", withIntermediateDirectories: true)
        try "SC32G\n".write(toFile: sys + "/class/block/mmcblk0/device/name", atomically: true, encoding: .utf8)
        let mountinfo = """
            22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw
            25 22 0:21 / /var/tmpfs rw shared:2 - tmpfs tmpfs rw
            26 22 179:1 / /boot/firmware rw shared:3 - vfat /dev/mmcblk0p1 rw
            """
        #expect(MachineInfo.storage(path: "/var/tmp/pimesh-bench.x", mountinfo: mountinfo, sysRoot: sys) == "ext4 on /dev/mmcblk0p2 (SC32G)")
        #expect(MachineInfo.storage(path: "/var/tmpfs/a", mountinfo: mountinfo, sysRoot: sys) == "tmpfs on tmpfs")
        #expect(MachineInfo.storage(path: "/x", mountinfo: "", sysRoot: sys) == "unknown")
    }

    @Test func thisMachineIsDescribed() {
        let machine = MachineInfo.current(storageFor: "/")
        #expect(machine.cores >= 1)
        #expect(machine.memoryBytes > 0)
        #expect(machine.kernel.hasPrefix("Linux "))
        #expect(!machine.cpuModel.isEmpty)
        #expect(machine.storage != "unknown")
    }
}

@Suite struct LatencySummaryTests {
    @Test func percentilesOfKnownLatenciesAreExactToThreeDigits() {
        let summary = LatencySummary(milliseconds: (1...1000).map { Double($0) })
        #expect(summary.count == 1000)
        #expect(abs(summary.p50Ms - 500) <= 0.5)
        #expect(abs(summary.p90Ms - 900) <= 0.9)
        #expect(abs(summary.p99Ms - 990) <= 1)
        #expect(abs(summary.maxMs - 1000) <= 1)
    }

    @Test func noSamplesAndNegativeSkewAreZero() {
        #expect(LatencySummary(milliseconds: []) == .empty)
        #expect(LatencySummary(milliseconds: [-3]).maxMs == 0)
    }
}

@Suite struct ScratchTests {
    /// The bench's private binary copy starts out of the page cache, as an installed binary
    /// does after a boot, so that the lead's code faults in as it would on a node.
    @Test func aCopiedBinaryIsOnStorageAndOutOfThePageCache() throws {
        let scratch = try Scratch(parent: "/var/tmp")
        defer { scratch.remove() }
        let source = scratch.path + "/source"
        let bytes = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
        try FileIO.writeAtomically(path: source, bytes: bytes, mode: 0o600)
        let copy = try scratch.copy(source, as: "copy")
        var info = stat()
        #expect(stat(copy, &info) == 0 && info.st_mode & 0o777 == 0o700)
        defer { #expect((try? FileIO.read(path: copy)) == bytes) }  // read last: reading caches it

        // A tmpfs keeps its pages only in the cache: nothing to drop there.
        guard Self.filesystemType(of: copy) != "tmpfs" else { return }
        let fd = open(copy, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        let length = bytes.count
        let mapped = try #require(mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0))
        defer { munmap(mapped, length) }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var cached = [UInt8](repeating: 0, count: (length + pageSize - 1) / pageSize)
        #expect(mincore(mapped, length, &cached) == 0)
        #expect(cached.filter { $0 & 1 == 1 }.count == 0)
    }

    /// The type of the mount that holds `path` (the longest mount point that prefixes it).
    static func filesystemType(of path: String) -> String? {
        guard let mounts = try? FileIO.readText(path: "/proc/self/mountinfo") else { return nil }
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            let fields = halves.first?.split(separator: " ") ?? []
            guard halves.count == 2, fields.count > 4, let type = halves[1].split(separator: " ").first else { continue }
            let point = String(fields[4])
            let holds = point == "/" || path == point || path.hasPrefix(point + "/")
            if holds, point.count >= (best?.point.count ?? 0) { best = (point, String(type)) }
        }
        return best?.type
    }
}

@Suite struct BenchReportTests {
    static func step(agents: Int, privateBytes: UInt64, dropped: Int = 0, supervisord: Bool = true) -> BenchReport.Step {
        let figures = ProcessFigures(
            rssBytes: 30 << 20, pssBytes: 20 << 20, pssMaxBytes: 21 << 20, privateBytes: privateBytes, privateMaxBytes: privateBytes,
            cpuPercentOfCore: 2.5, storageWriteBytesPerHour: 1_000_000)
        let latency = LatencySummary(milliseconds: [10, 20, 30])
        return .init(
            agents: agents, supervisedAgents: 3, readyAfterSeconds: 1.5, lead: figures,
            heartbeats: .init(accepted: agents * 80, dropped: dropped, droppedByReason: dropped > 0 ? ["stale": dropped] : [:]),
            nodeImpedance: 12, tasks: .init(count: 100, succeeded: 100, otherOutcomes: 0, tasksPerSecond: 900, submitToResult: latency),
            detection: .init(exitSeen: latency, heartbeatingAgain: latency, phiSuspicion: latency),
            supervisord: supervisord
                ? .init(version: "4.3.0", programs: agents, process: figures, respawn: latency) : nil)
    }

    static func report(_ steps: [BenchReport.Step]) -> BenchReport {
        let perAgent = BenchReport.perAgentPrivateBytes(steps: steps)
        return BenchReport(
            pimeshVersion: "0.1.0", startedAtMs: 0, elapsedSeconds: 100,
            machine: .init(cpuModel: "Test <CPU> & co", cores: 4, memoryBytes: 4 << 30, kernel: "Linux 6.1", architecture: "aarch64", storage: "ext4 on /dev/mmcblk0p2"),
            windowSeconds: 20, heartbeatIntervalMs: 250, steps: steps, perAgentPrivateBytes: perAgent,
            checks: BenchReport.checks(steps: steps, perAgentPrivateBytes: perAgent))
    }

    @Test func perAgentMemoryAboveFourKilobytesFailsItsCheck() throws {
        let lean = Self.report([Self.step(agents: 10, privateBytes: 4_000_000), Self.step(agents: 1000, privateBytes: 7_960_000)])
        #expect(lean.perAgentPrivateBytes == 4000)
        #expect(lean.checks.allSatisfy { $0.passed })
        let fat = Self.report([Self.step(agents: 10, privateBytes: 4_000_000), Self.step(agents: 1000, privateBytes: 9_000_000)])
        #expect(fat.perAgentPrivateBytes == 5051)
        let check = try #require(fat.checks.first { $0.name == "per_agent_private_bytes" })
        #expect(!check.passed)
        #expect(check.limit == 4096)
    }

    @Test func stepsCloseTogetherGiveNoPerAgentFigure() {
        let report = Self.report([Self.step(agents: 10, privateBytes: 4_000_000), Self.step(agents: 100, privateBytes: 9_000_000)])
        #expect(report.perAgentPrivateBytes == nil)
        #expect(!report.checks.contains { $0.name == "per_agent_private_bytes" })
        #expect(report.markdown().contains("needs steps at least 500 agents apart"))
    }

    @Test func aDroppedHeartbeatInAWindowFailsItsStepsCheck() {
        let report = Self.report([Self.step(agents: 10, privateBytes: 1), Self.step(agents: 100, privateBytes: 1, dropped: 2)])
        #expect(report.checks.first { $0.name == "heartbeats_dropped_at_10" }?.passed == true)
        #expect(report.checks.first { $0.name == "heartbeats_dropped_at_100" }?.passed == false)
        #expect(report.markdown().contains("- FAIL: heartbeats_dropped_at_100 = 2 (limit 0)"))
    }

    @Test func markdownHasARowPerStepAndTheComparison() {
        let markdown = Self.report([Self.step(agents: 10, privateBytes: 4 << 20), Self.step(agents: 100, privateBytes: 5 << 20)]).markdown()
        #expect(markdown.contains("| 10 | 20.0 | 4.0 | 2.50 | 800 / 0 | 12 | 1.00 |"))
        #expect(markdown.contains("| 100 | 20.0 | 5.0 | 2.50 | 8000 / 0 | 12 | 1.00 |"))
        #expect(markdown.contains("## Beside supervisord"))
        #expect(markdown.contains("| 100 | 4.3.0 |"))
        #expect(markdown.contains("Test &lt;CPU&gt; & co, 4 cores, 4096.0 MiB RAM"))
    }

    @Test func aStepWithoutTrialsShowsADashNotZero() {
        var step = Self.step(agents: 10_000, privateBytes: 40 << 20, supervisord: false)
        step.tasks = nil
        step.detection = .init(exitSeen: .empty, heartbeatingAgain: .empty, phiSuspicion: .empty)
        let markdown = Self.report([step]).markdown()
        #expect(markdown.contains("| 10000 | – | – | – | – | – | – |"), "\(markdown)")
    }

    @Test func theChartIsWellFormedSVGWithALinePerSeries() throws {
        let report = Self.report([Self.step(agents: 10, privateBytes: 4 << 20), Self.step(agents: 100, privateBytes: 5 << 20), Self.step(agents: 1000, privateBytes: 8 << 20)])
        let svg = report.svg()
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "report.svg does not parse: \(String(describing: parser.parserError))")
        // memory 4 (pimesh and supervisord), CPU 2, latency 4
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 10)
        #expect(svg.contains("Test &lt;CPU&gt; &amp; co"))
        #expect(!report.svg().contains("nan"))
        let withoutComparison = Self.report([Self.step(agents: 10, privateBytes: 1, supervisord: false)]).svg()
        #expect(withoutComparison.components(separatedBy: "<polyline").count - 1 == 7)
    }

    @Test func gridlinesStopAtRoundNumbers() {
        #expect(BenchReport.niceCeiling(0) == 1)
        #expect(BenchReport.niceCeiling(0.7) == 1)
        #expect(BenchReport.niceCeiling(3.2) == 5)
        #expect(BenchReport.niceCeiling(17) == 20)
        #expect(BenchReport.niceCeiling(100) == 100)
        #expect(BenchReport.niceCeiling(101) == 200)
    }

    @Test func reportJSONRoundTrips() throws {
        let report = Self.report([Self.step(agents: 10, privateBytes: 1)])
        let decoded = try APICoding.decode(BenchReport.self, from: APICoding.encode(report))
        #expect(decoded.steps.first?.lead.pssBytes == 20 << 20)
        #expect(decoded.machine.cpuModel == "Test <CPU> & co")
        #expect(decoded.steps.first?.systemd == nil)
    }

    static func withSystemd(_ step: BenchReport.Step) -> BenchReport.Step {
        var step = step
        let figures = ProcessFigures(
            rssBytes: 12 << 20, pssBytes: 9 << 20, pssMaxBytes: 9 << 20, privateBytes: 6 << 20, privateMaxBytes: 6 << 20,
            cpuPercentOfCore: 0.75, storageWriteBytesPerHour: 0)
        step.systemd = .init(version: "252", programs: step.agents, process: figures, respawn: LatencySummary(count: 3, p50Ms: 106, p90Ms: 110, p99Ms: 110, maxMs: 110))
        return step
    }

    @Test func systemdHasASectionAndChartLinesOfItsOwn() throws {
        let steps = [10, 100].map { Self.withSystemd(Self.step(agents: $0, privateBytes: 4 << 20)) }
        let report = Self.report(steps)
        let markdown = report.markdown()
        #expect(markdown.contains("## Beside supervisord"))
        #expect(markdown.contains("## Beside systemd"))
        #expect(markdown.contains("its figures are PID 1's"))
        #expect(markdown.contains("| 100 | 252 | 9.0 (20.0) | 6.0 (4.0) | 0.75 (2.50) | 106.0 / 110.0 (20.0 / 30.0) |"), "\(markdown)")
        // memory 6 (pimesh, supervisord, systemd), CPU 3, latency 4
        #expect(report.svg().components(separatedBy: "<polyline").count - 1 == 13)
        let decoded = try APICoding.decode(BenchReport.self, from: APICoding.encode(report))
        #expect(decoded.steps.last?.systemd?.version == "252")
        // A supervisor missing from a step has no line: a line needs a point at every step.
        let partial = Self.report([steps[0], Self.step(agents: 100, privateBytes: 4 << 20)])
        #expect(partial.svg().components(separatedBy: "<polyline").count - 1 == 10)
        #expect(partial.markdown().contains("## Beside systemd"))
    }
}

@Suite struct SystemdComparisonTests {
    @Test func mainPIDsComeFromSystemctlShowBlocksInAnyPropertyOrder() {
        let shown = "MainPID=58\nId=a.service\n\nId=b.service\nMainPID=0\n\nMainPID=61\nId=c.service\n"
        #expect(SystemdComparison.mainPIDs(shown: shown) == ["a.service": 58, "b.service": 0, "c.service": 61])
        #expect(SystemdComparison.mainPIDs(shown: "") == [:])
    }

    @Test func theUnitsCgroupIsFoundOnUnifiedAndHybridHosts() {
        let unit = "pimesh_bench_7_1_00001.service"
        // A Pi OS bookworm host: cgroup v2 only.
        let unified = SystemdComparison.cgroupProcsFile(
            membership: "0::/pimesh_bench_7_1.slice/\(unit)\n",
            mountinfo: "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
            unit: unit)
        #expect(unified == "/sys/fs/cgroup/pimesh_bench_7_1.slice/\(unit)/cgroup.procs")
        // A hybrid host: systemd keeps its units in the v1 name=systemd hierarchy.
        let hybrid = SystemdComparison.cgroupProcsFile(
            membership: "12:pids:/system.slice\n1:name=systemd:/pimesh_bench_7_1.slice/\(unit)\n0::/pimesh_bench_7_1.slice/\(unit)\n",
            mountinfo: """
                35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
                36 25 0:31 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
                """,
            unit: unit)
        #expect(hybrid == "/sys/fs/cgroup/systemd/pimesh_bench_7_1.slice/\(unit)/cgroup.procs")
        // Another unit's process, or no cgroup mount: nothing to read.
        #expect(SystemdComparison.cgroupProcsFile(membership: "0::/system.slice/other.service\n", mountinfo: "", unit: unit) == nil)
    }

    @Test func slicesHaveNoDashAndUnitsAreZeroPadded() {
        #expect(!SystemdComparison.slice(step: 2).dropLast(".slice".count).contains("-"))
        #expect(String.zeroPadded(7, width: 5) == "00007")
        #expect(String.zeroPadded(123_456, width: 5) == "123456")
    }
}
