import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// Seed 002's other DiRT tests on the node itself (docs/incidents.md "Drills"): an agent that
/// hangs, a snapshot that goes bad, and a resource siege. Each injects its fault, then watches
/// what the lead does about it and times detection, mitigation and recovery against the SLO.
public struct FaultDrill {
    /// What `pimesh drill hang|corrupt-snapshot|siege` prints.
    public struct Report: Codable, Sendable {
        public var drill: String
        public var target: String
        /// After the fault was injected: seen by the lead, its incident mitigated, back to normal.
        public var detectedMs: Int64?
        public var mitigatedMs: Int64?
        public var recoveredMs: Int64?
        public var incidents: [String]
        /// Seed 002's execution log of the playbooks that ran on those incidents.
        public var playbooks: [String]
        public var sloMs: Int64
        public var met: Bool
        /// The seed's own figure, for the table in docs/benchmarks.md.
        public var seedFigure: String
        public var notes: [String]
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    static let pollEvery = Duration.milliseconds(10)

    let state: LeadState
    let supervisor: Supervisor

    // MARK: - hang

    /// SIGSTOPs one running supervised agent behind the lead's back (not a freeze): the lead
    /// must see it go silent, kill it and start it again.
    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    func hang(name: String?, timeout: Duration, seed: UInt64) async throws -> Report {
        let running = supervisor.drillTargets()
        let target: (name: String, id: AgentID, pid: pid_t)
        if let name {
            guard let found = running.first(where: { $0.name == name }) else {
                throw Refused(description: "\(name) is not a running supervised agent of this lead")
            }
            target = found
        } else {
            var generator = SplitMix64(seed: seed)
            guard let picked = running.randomElement(using: &generator) else { throw Refused(description: "no supervised agent runs as the lead's child") }
            target = picked
        }
        let since = state.events.newestSequence
        let startedMs = Clock.wallMilliseconds()
        guard kill(target.pid, SIGSTOP) == 0 else { throw Refused(description: "cannot stop pid \(target.pid): \(String(cString: strerror(errno)))") }
        var detected: Int64?
        var recovered: Int64?
        var cursor = since
        let deadline = Clock.monotonicNow() + timeout
        while Clock.monotonicNow() < deadline, recovered == nil {
            let page = state.events.list(since: cursor, limit: 2048)
            cursor = page.next
            for event in page.events where event.agent == target.name {
                if detected == nil, ["suspected", "hung", "exited"].contains(event.kind) { detected = max(0, event.atMs - startedMs) }
                if detected != nil, event.kind == "alive" { recovered = max(0, event.atMs - startedMs) }
            }
            if recovered == nil { try await Task.sleep(for: Self.pollEvery) }
        }
        if recovered == nil { kill(target.pid, SIGCONT) }
        var report = await settle(
            drill: "hang", target: target.name, agents: [target.name], startedMs: startedMs, detected: detected, recovered: recovered,
            slo: 60_000, seed: "seed 002: a single agent is recovered within its 60 s SLO", deadline: deadline)
        report.notes.append("pid \(target.pid) was stopped with SIGSTOP; the lead restarts an agent silent for supervision.heal_after_ms")
        return report
    }

    // MARK: - corrupt-snapshot

    /// Damages the newest snapshot in the spool (bytes in the middle of its compressed file,
    /// its size kept), then verifies the spool as the lead does after every snapshot: the
    /// verification's time is the detection (seed 002's DIRT02: 0.2 s). The incident's playbook
    /// quarantines the file and takes a fresh snapshot; recovery is the spool verifying again.
    @_optimize(size)  // cold: an operator's drill (the 25 MB budget)
    func corruptSnapshot(timeout: Duration) async throws -> Report {
        guard let snapshots = state.snapshots else { throw Refused(description: "snapshots are not running on this lead") }
        if snapshots.maker.spool.entries().entries.isEmpty { _ = try await snapshots.takeNow() }
        guard let newest = snapshots.maker.spool.entries().entries.last else { throw Refused(description: "no snapshot could be taken to damage") }
        let startedMs = Clock.wallMilliseconds()
        try Self.damage(newest.filePath)
        let started = Clock.monotonicNow()
        let verification = try await snapshots.verifySpool()
        let detected = verification.failures.isEmpty ? nil : Int64((Clock.monotonicNow() - started).milliseconds.rounded(.up))
        let deadline = Clock.monotonicNow() + timeout
        var recovered: Int64?
        while detected != nil, Clock.monotonicNow() < deadline {
            let quarantined = !FileIO.exists(newest.manifestPath)
            if quarantined, snapshots.maker.spool.entries().entries.contains(where: { $0.manifest.sequence > newest.manifest.sequence }) {
                recovered = Clock.wallMilliseconds() - startedMs
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        var report = await settle(
            drill: "corrupt-snapshot", target: newest.manifest.file, agents: [], startedMs: startedMs, detected: detected, recovered: recovered,
            slo: 60_000, seed: "seed 002 DIRT02: corruption detected in 0.2 s", deadline: deadline, causes: ["integrity:snapshot"])
        report.met = report.met && (detected ?? .max) <= 200
        report.notes.append("verified \(verification.checked) snapshot(s) in \(Int(verification.milliseconds.rounded())) ms")
        return report
    }

    static func damage(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw Refused(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        guard info.st_size > 64 else { throw Refused(description: "\(path) is too small to damage") }
        var garbage = [UInt8](repeating: 0xA5, count: 16)
        let written = garbage.withUnsafeMutableBytes { pwrite(fd, $0.baseAddress, 16, off_t(info.st_size / 2)) }
        guard written == 16 else { throw Refused(description: "cannot write \(path): \(String(cString: strerror(errno)))") }
        fsync(fd)
    }

    // MARK: - siege

    /// Loads the node from a child of the lead (`pimesh drill load`: busy threads and touched
    /// memory) for `seconds`, and checks that the node copes: no agent fails because of it,
    /// and the node is back to normal soon after the load stops.
    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    func siege(cpu: Int, memoryMB: Int, seconds: Int, timeout: Duration) async throws -> Report {
        let since = state.events.newestSequence
        let startedMs = Clock.wallMilliseconds()
        let openBefore = Set(state.incidents?.open.map(\.id) ?? [])
        let spawned = try ChildProcess.spawn(
            program: "/proc/self/exe", arguments: ["drill", "load", "--cpu", "\(cpu)", "--memory-mb", "\(memoryMB)", "--seconds", "\(seconds)"],
            environment: ["PATH=/usr/bin:/bin"], captureOutput: false)
        let exited = ExitFlag()
        supervisor.reaper.watch(spawned.pid) { _, _ in exited.set() }
        let loadEnds = Clock.monotonicNow() + .seconds(Int64(seconds))
        var peakScore = state.node.latest.impedance.score
        var worstLevel = state.health.level
        while Clock.monotonicNow() < loadEnds, !exited.isSet {
            peakScore = max(peakScore, state.node.latest.impedance.score)
            worstLevel = max(worstLevel, state.health.level)
            try await Task.sleep(for: .milliseconds(50))
        }
        kill(spawned.pid, SIGKILL)
        let loadStoppedMs = Clock.wallMilliseconds() - startedMs
        let deadline = Clock.monotonicNow() + timeout
        var recovered: Int64?
        while Clock.monotonicNow() < deadline {
            let counts = state.registry.healthCounts(at: Clock.monotonicNow(), expected: supervisor.expectedAgents())
            if state.node.latest.impedance.score <= 800, counts.healthy == counts.total, state.health.level == .full {
                recovered = Clock.wallMilliseconds() - startedMs
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let failed = state.events.list(since: since, limit: 2048).events.filter { event in
            event.agent != nil && ["exited", "hung", "suspected", "looping"].contains(event.kind)
        }.compactMap(\.agent)
        let opened = (state.incidents?.open ?? []).filter { !openBefore.contains($0.id) }
        var report = await settle(
            drill: "siege", target: "node", agents: [], startedMs: startedMs, detected: nil, recovered: recovered, slo: Int64(seconds) * 1000 + 60_000,
            seed: "seed 002 DIRT03: the node held a resource siege, recovered in 40.2 s", deadline: deadline, incidentFilter: opened.map(\.id))
        report.met = recovered != nil && failed.isEmpty
        report.notes.append("load: \(cpu) busy thread(s) and \(memoryMB) MiB touched for \(seconds) s, stopped after \(loadStoppedMs) ms")
        report.notes.append("peak node score \(peakScore), worst degradation level \(worstLevel.rawValue)")
        report.notes.append(failed.isEmpty ? "no agent failed during the siege" : "agents that failed: \(Array(Set(failed)).sorted().joined(separator: ", "))")
        return report
    }

    // MARK: - Common

    /// Finds the drill's incidents (holding its agents or causes, touched since the start) and
    /// waits a little for their mitigation once the fault is gone.
    @_optimize(size)  // cold: an operator's drill (the 25 MB budget)
    private func settle(
        drill: String, target: String, agents: [String], startedMs: Int64, detected: Int64?, recovered: Int64?, slo: Int64, seed: String,
        deadline: Instant, causes: [String] = [], incidentFilter: [Int64]? = nil
    ) async -> Report {
        func find() -> [Incident] {
            guard let service = state.incidents else { return [] }
            var seen: Set<Int64> = []
            return (service.open + ((try? service.recent(limit: 20, beforeID: .max)) ?? [])).filter { incident in
                let ours = incidentFilter.map { $0.contains(incident.id) }
                    ?? (incident.agents.contains(where: agents.contains) || incident.causes.contains(where: causes.contains))
                return ours && incident.timeline.contains { $0.atMs >= startedMs } && seen.insert(incident.id).inserted
            }
        }
        var incidents = find()
        let settleBy = min(deadline, Clock.monotonicNow() + .seconds(3))
        while recovered != nil, Clock.monotonicNow() < settleBy,
            incidents.isEmpty || incidents.contains(where: { KillDrill.mitigatedAt($0, since: startedMs) == nil })
        {
            try? await Task.sleep(for: .milliseconds(20))
            incidents = find()
        }
        let mitigations = incidents.map { KillDrill.mitigatedAt($0, since: startedMs) }
        let mitigated = incidents.isEmpty || mitigations.contains(nil) ? nil : mitigations.compactMap { $0 }.max().map { $0 - startedMs }
        let playbooks = incidents.flatMap { incident in (incident.playbookRuns ?? []).filter { $0.startedMs >= startedMs }.map { "\(incident.name): \($0.summary)" } }
        return Report(
            drill: drill, target: target, detectedMs: detected, mitigatedMs: mitigated, recoveredMs: recovered, incidents: incidents.map(\.name).sorted(),
            playbooks: playbooks, sloMs: slo, met: (recovered ?? .max) <= slo, seedFigure: seed, notes: [])
    }
}

/// Set once from the reaper's thread, read by the drill.
final class ExitFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}
