import Glibc
import PimeshAgent
import PimeshCore
import PimeshRuntime
import PimeshSystem

/// `pimesh bench run`: the on-device load benchmark. For each number of agents it starts a lead
/// of its own (from a private copy of this binary, in a scratch data dir on the storage being
/// measured), a swarm that takes work, and a few supervised agents, then measures the lead over
/// a steady window, submits tasks, kills agents, and (optionally) does the same with supervisord
/// and with systemd.
public struct LoadBenchmark: Sendable {
    public struct Settings: Sendable {
        public var agentSteps: [Int]
        public var windowSeconds: Double
        /// From READY (and the status call that reads the window's starting counts) to the
        /// window: `LoadBenchmark.defaultSettleSeconds` lets the lead trim what those calls
        /// brought in.
        public var settleSeconds: Double
        /// kill -9 trials of a supervised agent per step (and of a supervisord program).
        public var kills: Int
        /// kill -9 trials of an attached agent (phi detection) per step.
        public var attachedKills: Int
        /// Tasks per step; nil: as many as agents, at least 100 and at most 1,000.
        public var tasks: Int?
        public var compareSupervisord: Bool
        /// As many transient services under systemd (PID 1), started with systemd-run.
        public var compareSystemd: Bool
        /// Where the scratch data dirs go (their storage is the one measured).
        public var scratchParent: String
        /// This binary: the lead, the swarm and the supervised agents all run it.
        public var binary: String
        /// The data dir of a lead that already runs (`--lead`): each step's swarm joins it
        /// instead of a lead of the bench's own. No supervised agent is killed and no task is
        /// submitted there, so that the node's own agents never take the bench's work.
        public var runningLead: String?

        public init(
            agentSteps: [Int], windowSeconds: Double, settleSeconds: Double = LoadBenchmark.defaultSettleSeconds, kills: Int,
            attachedKills: Int, tasks: Int?, compareSupervisord: Bool, compareSystemd: Bool = false, scratchParent: String, binary: String,
            runningLead: String? = nil
        ) {
            self.agentSteps = agentSteps
            self.windowSeconds = windowSeconds
            self.settleSeconds = settleSeconds
            self.kills = kills
            self.attachedKills = attachedKills
            self.tasks = tasks
            self.compareSupervisord = compareSupervisord
            self.compareSystemd = compareSystemd
            self.scratchParent = scratchParent
            self.binary = binary
            self.runningLead = runningLead
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// Three supervised agents: enough to kill one while the last one killed becomes stable again.
    static let supervisedAgents = 3
    /// From the status call before a window to the window's start: the lead trims its idle code
    /// every `node.code_trim_interval_s` (15 s by default), looking every 5 s, so a trim falls in
    /// any 20 s; one more second for the trim itself.
    public static let defaultSettleSeconds =
        Double(LeadConfig().node.codeTrimIntervalS) + Double(CodePages.trimCheckEvery.components.seconds) + 1

    static let supervisedStableAfterSeconds = 1.0

    public let settings: Settings
    let progress: @Sendable (String) -> Void

    public init(settings: Settings, progress: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.progress = progress
    }

    @_optimize(size)  // cold: the bench drives, it is not measured (the 25 MB budget)
    public func run() async throws -> BenchReport {
        let started = Clock.monotonicNow()
        let startedAtMs = Clock.wallMilliseconds()
        var supervisordVersion: String?
        if settings.compareSupervisord {
            supervisordVersion = try SupervisordComparison.version()
        }
        let systemdTools = settings.compareSystemd ? try SystemdComparison.tools() : nil
        var runningLead: BenchReport.RunningLead?
        if let dataDir = settings.runningLead {
            runningLead = try prepare(runningLead: dataDir)
        }
        var steps: [BenchReport.Step] = []
        var intervalMs = 250
        var storage = "unknown"
        for (index, agents) in settings.agentSteps.enumerated() {
            let label = "[\(index + 1)/\(settings.agentSteps.count)] \(agents) agents"
            let scratch = try Scratch(parent: settings.scratchParent)
            storage = MachineInfo.current(storageFor: scratch.path).storage
            do {
                let (step, interval) = try await runStep(
                    agents: agents, step: index + 1, scratch: scratch, supervisordVersion: supervisordVersion,
                    systemdTools: systemdTools, label: label)
                intervalMs = interval
                steps.append(step)
                scratch.remove()
            } catch is CancellationError {
                scratch.remove()
                throw CancellationError()
            } catch {
                // The logs stay for the operator; the copies of the binary need not stay on the card.
                unlink(scratch.path + "/pimesh-lead")
                unlink(scratch.path + "/pimesh-agent")
                throw Failure("\(label): \(error) (lead and swarm logs kept in \(scratch.path))")
            }
        }
        var machine = MachineInfo.current(storageFor: settings.scratchParent)
        machine.storage = storage
        let perAgent = BenchReport.perAgentPrivateBytes(steps: steps)
        return BenchReport(
            pimeshVersion: PimeshVersion.current, startedAtMs: startedAtMs,
            elapsedSeconds: ImpedanceView.round((Clock.monotonicNow() - started).milliseconds / 1000), machine: machine,
            windowSeconds: settings.windowSeconds, settleSeconds: settings.settleSeconds, heartbeatIntervalMs: intervalMs, steps: steps,
            perAgentPrivateBytes: perAgent, checks: BenchReport.checks(steps: steps, perAgentPrivateBytes: perAgent),
            runningLead: runningLead)
    }

    @_optimize(size)  // cold: the bench drives, it is not measured (the 25 MB budget)
    private func runStep(
        agents: Int, step stepNumber: Int, scratch: Scratch, supervisordVersion: String?, systemdTools: SystemdComparison.Tools?,
        label: String
    ) async throws -> (BenchReport.Step, Int) {
        let children = Children()
        // On a running lead, the bench's agents are removed once their processes are gone: its
        // registry keeps agents that left, and would fill with the bench's (issue 14 review).
        var borrowed: (client: LeadClient, names: [String])?
        defer {
            children.stopAll()
            if let borrowed { Self.remove(borrowed.names, from: borrowed.client) }
        }
        let lead: pid_t
        let client: LeadClient
        let dataDir: String
        let expected: Int
        let supervisedAgents: Int
        let namePrefix: String
        if let running = settings.runningLead {
            dataDir = running
            let status = try Self.runningLeadStatus(dataDir: running)
            client = try LeadClient(dataDir: running, timeoutMs: 10_000)
            lead = status.pid
            supervisedAgents = 0
            expected = status.agents.ready + agents
            // A name of its own per run and step (another bench may run beside this one), with
            // this process's pid: a later run removes what it left only once that pid is gone.
            namePrefix = "bench-\(getpid())-\(String(UInt16.random(in: 0...UInt16.max), radix: 16))"
            borrowed = (client, (0..<agents).map { SimulatedSwarm.agentName(prefix: namePrefix, index: $0, of: agents) })
        } else {
            // Private copies: processes that map one file share (and split) the PSS of its pages, and
            // the lead's figure would then depend on how many agents run the same binary.
            let leadBinary = try scratch.copy(settings.binary, as: "pimesh-lead")
            let agentBinary = try scratch.copy(settings.binary, as: "pimesh-agent")
            try scratch.writeSupervisedManifests(count: Self.supervisedAgents, binary: agentBinary)

            let config = try scratch.writeLeadConfig(agents: agents + Self.supervisedAgents + settings.attachedKills)

            progress("\(label): starting the lead")
            lead = try children.start(
                leadBinary,
                [
                    "run", "--config", config, "--data-dir", scratch.path, "--api-port", "0", "--heartbeat-port", "0",
                    "--log-level", "warning",
                ],
                log: scratch.path + "/lead.log")
            client = try await waitForLead(pid: lead, dataDir: scratch.path, children: children)
            dataDir = scratch.path
            supervisedAgents = Self.supervisedAgents
            expected = agents + Self.supervisedAgents
            namePrefix = "bench"
        }
        let swarmStarted = Clock.monotonicNow()
        // Identities go to the scratch dir, never into a running lead's data dir.
        _ = try children.start(
            settings.binary,
            [
                "swarm", "--data-dir", dataDir, "--agents", String(agents), "--name-prefix", namePrefix,
                "--state-file", scratch.path + "/swarm.json", "--parent-pid", String(getpid()),
            ] + (settings.runningLead != nil ? ["--capabilities", Self.benchCapability] : []),
            log: scratch.path + "/swarm.log")
        let readyDeadline = Clock.monotonicNow() + .seconds(60 + Int64(agents / 20))
        while true {
            try children.checkAlive()
            if let status = try? client.status(), status.agents.ready >= expected { break }
            if Clock.monotonicNow() > readyDeadline {
                throw Failure("fewer than \(expected) agents READY after \(60 + agents / 20) s")
            }
            progress("\(label): waiting for \(expected) agents to be READY")
            try await Task.sleep(for: .milliseconds(100))
        }
        let readyAfter = (Clock.monotonicNow() - swarmStarted).milliseconds / 1000

        var supervisord: SupervisordComparison?
        if let supervisordVersion {
            progress("\(label): starting supervisord with \(agents) programs")
            supervisord = try await SupervisordComparison.start(
                programs: agents, directory: scratch.path + "/supervisord", version: supervisordVersion, children: children)
        }
        var systemd: SystemdComparison?
        // Services outlive the bench's process: stopped however the step ends.
        defer { systemd?.stop() }
        if let systemdTools {
            progress("\(label): starting \(agents) services with systemd-run")
            systemd = try await SystemdComparison.start(programs: agents, step: stepNumber, tools: systemdTools, children: children)
        }
        // The status calls (this one and the ready checks) fault the lead's HTTP and JSON code
        // in, and it stays mapped until the lead's next code trim: the window starts after one,
        // so that it measures the lead's steady state, not the bench's own requests.
        let before = try client.status()
        progress("\(label): settling for \(settings.settleSeconds) s (past the lead's next code trim)")
        try await Task.sleep(for: .milliseconds(Int64(settings.settleSeconds * 1000)))
        let leadMeter = ProcessMeter(pid: lead)
        var leadSamples: [ProcessMeter.Reading] = []
        var supervisordSamples: [ProcessMeter.Reading] = []
        var systemdSamples: [ProcessMeter.Reading] = []
        let windowStart = Clock.monotonicNow()
        while true {
            try children.checkAlive()
            guard let reading = leadMeter.read() else { throw Failure("the lead's /proc entry is gone") }
            leadSamples.append(reading)
            if let supervisord, let reading = ProcessMeter(pid: supervisord.pid).read() { supervisordSamples.append(reading) }
            if systemd != nil, let reading = ProcessMeter(pid: SystemdComparison.pid).read() { systemdSamples.append(reading) }
            let elapsed = (Clock.monotonicNow() - windowStart).milliseconds / 1000
            if elapsed >= settings.windowSeconds { break }
            progress("\(label): measuring \(Self.bar(elapsed / settings.windowSeconds)) \(Int(elapsed))/\(Int(settings.windowSeconds)) s")
            try await Task.sleep(for: .milliseconds(Int64(min(1000, (settings.windowSeconds - elapsed) * 1000))))
        }
        let after = try client.status()
        guard let leadFigures = ProcessFigures(samples: leadSamples) else { throw Failure("the window held fewer than 2 samples") }
        var dropped: [String: Int] = [:]
        for (reason, count) in after.heartbeats.dropped where count != before.heartbeats.dropped[reason] ?? 0 {
            dropped[reason] = count - (before.heartbeats.dropped[reason] ?? 0)
        }

        var tasks: BenchReport.Tasks?
        let taskCount = settings.runningLead != nil ? 0 : settings.tasks ?? min(1000, max(100, agents))
        if taskCount > 0 {
            progress("\(label): \(taskCount) tasks")
            let result = try await TaskBenchmark(dataDir: dataDir, tasks: taskCount, concurrency: 16, weight: 1).run()
            tasks = BenchReport.Tasks(
                count: result.tasks, succeeded: result.succeeded, otherOutcomes: result.otherOutcomes,
                tasksPerSecond: result.tasksPerSecond, submitToResult: result.submitToResult)
        }

        let events = EventWatcher(client: client)
        var exitSeen: [Double] = []
        var back: [Double] = []
        var lastBack: [String: Instant] = [:]
        for trial in 0..<(supervisedAgents > 0 ? settings.kills : 0) {
            progress("\(label): kill -9 of a supervised agent, \(trial + 1) of \(settings.kills)")
            let name = "bench-supervised-\(trial % Self.supervisedAgents + 1)"
            // Each kill meets a stable agent and so the first restart delay, not a backoff grown by the last kill.
            if let back = lastBack[name] {
                let stableAt = back + .milliseconds(Int64(Self.supervisedStableAfterSeconds * 1000) + 200)
                let wait = (stableAt - Clock.monotonicNow()).milliseconds
                if wait > 0 { try await Task.sleep(for: .milliseconds(Int64(wait))) }
            }
            let pid = try await supervisedPID(name: name, client: client)
            let mark = try events.mark()
            let killedAt = try signalOwned(pid, SIGKILL) { (try? Self.supervisedPIDNow(name: name, client: client)) == pid }
            let exited = try await events.wait(agent: name, kinds: ["exited"], after: mark)
            let alive = try await events.wait(agent: name, kinds: ["alive"], after: mark)
            exitSeen.append(Double(exited.atMs - killedAt))
            back.append(Double(alive.atMs - killedAt))
            lastBack[name] = Clock.monotonicNow()
            try children.checkAlive()
        }
        var phi: [Double] = []
        for trial in 0..<settings.attachedKills {
            progress("\(label): kill -9 of an attached agent, \(trial + 1) of \(settings.attachedKills)")
            // A new agent per trial: no event of an earlier one can answer this one.
            let prefix = "probe\(namePrefix.dropFirst("bench".count))\(trial + 1)"
            let started = try events.mark()
            borrowed?.names.append(SimulatedSwarm.agentName(prefix: prefix, index: 0, of: 1))
            let probe = try children.start(
                settings.binary,
                [
                    "swarm", "--data-dir", dataDir, "--agents", "1", "--name-prefix", prefix, "--no-work",
                    "--state-file", scratch.path + "/\(prefix).json", "--parent-pid", String(getpid()),
                ],
                log: scratch.path + "/probe.log")
            _ = try await events.wait(agent: "\(prefix)-001", kinds: ["alive"], after: started)
            // A few intervals for phi to learn the agent's rhythm.
            try await Task.sleep(for: .milliseconds(6 * Int64(after.heartbeats.intervalMs)))
            let mark = try events.mark()
            let killedAt = Clock.wallMilliseconds()
            children.kill(probe, signal: SIGKILL)
            let suspected = try await events.wait(agent: "\(prefix)-001", kinds: ["suspected"], after: mark)
            phi.append(Double(suspected.atMs - killedAt))
        }

        var supervisordReport: BenchReport.Comparison?
        if let supervisord {
            var respawns: [Double] = []
            for trial in 0..<settings.kills {
                progress("\(label): kill -9 of a supervisord program, \(trial + 1) of \(settings.kills)")
                respawns.append(try await supervisord.killOneAndTimeRespawn())
            }
            guard let figures = ProcessFigures(samples: supervisordSamples) else {
                throw Failure("supervisord's /proc entry could not be read")
            }
            supervisordReport = BenchReport.Comparison(
                version: supervisord.version, programs: agents, process: figures, respawn: LatencySummary(milliseconds: respawns))
        }
        var systemdReport: BenchReport.Comparison?
        if let systemd {
            var restarts: [Double] = []
            for trial in 0..<settings.kills {
                progress("\(label): kill -9 of a systemd service, \(trial + 1) of \(settings.kills)")
                restarts.append(try await systemd.killOneAndTimeRespawn(trial: trial))
            }
            guard let figures = ProcessFigures(samples: systemdSamples) else { throw Failure("PID 1's /proc entry could not be read") }
            systemdReport = BenchReport.Comparison(
                version: systemd.version, programs: agents, process: figures, respawn: LatencySummary(milliseconds: restarts))
        }
        let step = BenchReport.Step(
            agents: agents, supervisedAgents: supervisedAgents, readyAfterSeconds: ImpedanceView.round(readyAfter),
            lead: leadFigures,
            heartbeats: .init(
                accepted: after.heartbeats.accepted - before.heartbeats.accepted,
                dropped: after.heartbeats.droppedTotal - before.heartbeats.droppedTotal, droppedByReason: dropped),
            nodeImpedance: after.node.score, tasks: tasks,
            detection: .init(
                exitSeen: LatencySummary(milliseconds: exitSeen), heartbeatingAgain: LatencySummary(milliseconds: back),
                phiSuspicion: LatencySummary(milliseconds: phi)),
            supervisord: supervisordReport, systemd: systemdReport)
        progress("\(label): done")
        return (step, after.heartbeats.intervalMs)
    }

    /// The capability that is all a running lead's bench agents offer: none of the node's tasks
    /// can go to them, and a later run knows what an earlier one left.
    public static let benchCapability = "pimesh-bench"

    /// Before the first step on a running lead: agents that a bench killed before its cleanup
    /// left behind (only `benchCapability`, named by a bench whose pid is gone) go, and the
    /// largest step must fit in the registry beside the node's own agents.
    @_optimize(size)  // cold: the bench drives, it is not measured (the 25 MB budget)
    private func prepare(runningLead dataDir: String) throws -> BenchReport.RunningLead {
        let client: LeadClient
        do {
            client = try LeadClient(dataDir: dataDir, timeoutMs: 10_000)
        } catch {
            throw Failure("--lead \(dataDir): \(error)")
        }
        let leftovers = try client.agents().agents.filter { $0.capabilities == [Self.benchCapability] && Self.benchIsGone(named: $0.name) }
        if !leftovers.isEmpty { progress("removing \(leftovers.count) agents an earlier bench left behind") }
        let removed = Self.remove(leftovers.map(\.id.description), from: client)
        let status = try Self.runningLeadStatus(dataDir: dataDir)
        let largest = settings.agentSteps.max() ?? 0
        if let limit = status.agents.maxRegistered, status.agents.total + largest > limit {
            throw Failure(
                "--lead \(dataDir): the lead holds \(status.agents.total) agents and takes \(limit) (agents.max_registered): "
                    + "a step of \(largest) does not fit beside them; run smaller steps or raise the limit")
        }
        return BenchReport.RunningLead(
            dataDir: dataDir, pid: status.pid, agentsBefore: status.agents.total, readyBefore: status.agents.ready,
            leftoversRemoved: removed)
    }

    /// Removes the bench's agents from a running lead (each was stopped first); one that is not
    /// there (it never registered) is no error.
    @discardableResult
    static func remove(_ names: [String], from client: LeadClient) -> Int {
        names.filter { (try? client.delete("/v1/agents/\($0)")) != nil }.count
    }

    /// `bench-PID-…`: whether the bench with that pid no longer runs (on this machine: `--lead`
    /// is a lead here). Names of another form are never a bench's.
    static func benchIsGone(named name: String) -> Bool {
        let parts = name.split(separator: "-")
        guard parts.count >= 3, parts[0] == "bench", let pid = Int32(parts[1]), pid > 0 else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    /// A running lead's status, or an error that says why it cannot be benchmarked.
    static func runningLeadStatus(dataDir: String) throws -> StatusReport {
        do {
            return try LeadClient(dataDir: dataDir, timeoutMs: 10_000).status()
        } catch {
            throw Failure("--lead \(dataDir): no lead answers there (\(error))")
        }
    }

    private func waitForLead(pid: pid_t, dataDir: String, children: Children) async throws -> LeadClient {
        let deadline = Clock.monotonicNow() + .seconds(60)
        while true {
            try children.checkAlive()
            if let client = try? LeadClient(dataDir: dataDir, timeoutMs: 10_000), (try? client.status()) != nil {
                return client
            }
            if Clock.monotonicNow() > deadline { throw Failure("the lead did not answer within 60 s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func supervisedPID(name: String, client: LeadClient) async throws -> pid_t {
        let deadline = Clock.monotonicNow() + .seconds(30)
        while true {
            if let pid = try? Self.supervisedPIDNow(name: name, client: client) {
                return pid
            }
            if Clock.monotonicNow() > deadline { throw Failure("\(name) was not READY with a pid within 30 s") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The pid of a READY supervised agent, as the lead knows it now.
    static func supervisedPIDNow(name: String, client: LeadClient) throws -> pid_t? {
        let view = try APICoding.decode(AgentView.self, from: client.get("/v1/agents/\(name)"))
        return view.state == "READY" ? view.supervision?.pid : nil
    }

    static func bar(_ fraction: Double, width: Int = 20) -> String {
        let filled = max(0, min(width, Int((fraction * Double(width)).rounded())))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}

extension LeadClient {
    func status() throws -> StatusReport {
        try APICoding.decode(StatusReport.self, from: get("/v1/status"))
    }
}

/// The lead's health events, read incrementally. A benchmark marks the log just before it kills
/// something and waits for the first matching event after the mark: sequence numbers, not
/// clocks, decide what can be an answer. Latencies are the event's time (the lead's wall clock)
/// minus the kill's (this process's): one machine, one clock.
final class EventWatcher {
    let client: LeadClient
    private var next: UInt64 = 0
    private var highest: UInt64 = 0
    /// Only events newer than the oldest mark still waited for are kept.
    private var seen: [HealthEvent] = []

    init(client: LeadClient) {
        self.client = client
    }

    /// Reads pages until one comes back empty: a busy lead (1,000 agents starting) writes more
    /// events between two polls than one page holds.
    private func poll() throws {
        while true {
            let list = try APICoding.decode(HealthEventList.self, from: client.get("/v1/events?since=\(next)&limit=1000"))
            next = list.next
            for event in list.events where event.sequence > highest {
                seen.append(event)
                highest = event.sequence
            }
            if list.events.isEmpty { return }
        }
    }

    /// The newest sequence number now: what happens after this call has a higher one.
    func mark() throws -> UInt64 {
        try poll()
        seen.removeAll()
        return highest
    }

    func wait(agent: String, kinds: Set<String>, after mark: UInt64, timeoutSeconds: Int64 = 15) async throws -> HealthEvent {
        let deadline = Clock.monotonicNow() + .seconds(timeoutSeconds)
        while true {
            try poll()
            if let match = seen.first(where: { $0.sequence > mark && $0.agent == agent && kinds.contains($0.kind) }) {
                return match
            }
            if Clock.monotonicNow() > deadline {
                throw LoadBenchmark.Failure("no \(kinds.sorted().joined(separator: "/")) event for \(agent) within \(timeoutSeconds) s")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
