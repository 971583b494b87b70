import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// Supervision with real child processes: `pimesh run` starts `pimesh sim-agent` processes from
/// manifests in `<data dir>/agents.d`, and the tests kill, stop, freeze and starve them.
@Suite(.serialized) struct SupervisionEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func manifest(_ name: String, _ json: String) throws {
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try json.write(toFile: dataDir + "/agents.d/\(name).json", atomically: true, encoding: .utf8)
    }

    func agentManifest(_ name: String, capabilities: [String] = ["work"], args: [String] = [], stableAfterS: Int = 1) throws {
        let arguments = (["sim-agent"] + args).map { "\"\($0)\"" }.joined(separator: ", ")
        let capabilityList = capabilities.map { "\"\($0)\"" }.joined(separator: ", ")
        try manifest(
            name,
            """
            {"name": "\(name)", "command": "\(LeadProcess.binary)", "args": [\(arguments)], "capabilities": [\(capabilityList)],
             "restart": {"stable_after_s": \(stableAfterS)}}
            """)
    }

    func startLead(config: String = "{}") throws -> LeadProcess {
        let path = dataDir + "/pimesh.json"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", path])
        _ = try lead.waitReady()
        return lead
    }

    func agent(_ lead: LeadProcess, _ name: String) throws -> AgentView {
        guard let view = try lead.agents().first(where: { $0.name == name }) else { throw Failure("no agent \(name)") }
        return view
    }

    func events(_ lead: LeadProcess) throws -> [HealthEvent] {
        try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events")).events
    }

    func pid(_ lead: LeadProcess, _ name: String) -> Int32? {
        (try? agent(lead, name))?.supervision?.pid
    }

    func alive(_ lead: LeadProcess, _ name: String) -> Bool {
        (try? agent(lead, name).health?.condition) == "alive"
    }

    func processState(_ pid: Int32) -> Character? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        return text[text.index(close, offsetBy: 2)]
    }

    /// Issue 13 item 7: one agent writing `yes` to stdout cost the lead 65 % of a core. Now its
    /// log takes what the rate limit allows, the rest is dropped and counted, and the files
    /// stay within the cap (the CPU figure is in docs/benchmarks.md, "Log flood").
    @Test func aFloodingAgentIsRateLimitedAndTheLogSaysHowMuchWasDropped() throws {
        try manifest("flood", #"{"name": "flood", "command": "/bin/sh", "args": ["-c", "exec yes pimesh-flood-line"]}"#)
        let lead = try startLead(config: #"{"supervision": {"log_rate_kb_s": 64, "log_max_kb": 512}}"#)
        defer { _ = lead.terminate() }
        let log = dataDir + "/run/logs/flood.log"
        var text = ""
        #expect(eventually(timeout: 20) {
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let rotated = try? String(contentsOfFile: log + ".1", encoding: .utf8) { text = rotated + text }
            return text.contains("bytes dropped: this agent wrote more than 64 KiB/s")
        }, "no drop note in \(log): \(text.suffix(300))")
        #expect(text.contains(" out pimesh-flood-line\n20"))
        let sizes = [log, log + ".1"].map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0 }
        #expect(sizes.allSatisfy { $0 <= 512 * 1024 + 4096 }, "\(sizes)")
        #expect(pid(lead, "flood") != nil, "the flooding agent is still running, slowed, not killed")
    }

    @Test func restartsAKilledAgentBacksOffACrashingOneAndRefusesABadManifest() throws {
        try agentManifest("w1")
        try agentManifest("w2")
        try manifest(
            "crasher",
            #"{"name": "crasher", "command": "/bin/sh", "args": ["-c", "echo crashing; exit 1"], "restart": {"initial_backoff_ms": 100, "max_backoff_ms": 60000}}"#
        )
        try manifest("broken", "{\n  \"name\": \"broken\",\n  \"command\": \"/bin/true\",\n  \"restart\": {\"policy\": \"sometimes\"}\n}")
        let lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 5) { alive(lead, "w1") && alive(lead, "w2") })

        let health = try #require(try lead.status().health)
        #expect(health.supervised == 3)
        #expect(health.refusedManifests.count == 1)
        #expect(health.refusedManifests.first?.contains("broken.json:4: key \"restart.policy\": \"sometimes\" is not one of") == true)

        // kill -9: seen at once, running and heartbeating again well within 2 s.
        let before = try #require(try agent(lead, "w1").supervision?.pid)
        let killedAt = Date()
        kill(before, SIGKILL)
        #expect(eventually(timeout: 2) { alive(lead, "w1") && pid(lead, "w1").map { $0 != before } == true })
        let back = Date().timeIntervalSince(killedAt)
        #expect(back < 2, "back after \(back) s")
        #expect(try agent(lead, "w1").supervision?.restarts == 1)
        #expect(try agent(lead, "w1").supervision?.lastExit?.contains("signal 9") == true)
        // The restart was an L0 step, timed from the end of its backoff to the spawn. (How long
        // it took depends on the machine's load: the figure is for operators, not asserted.)
        let l0 = try #require(try lead.status().health?.tiers.first { $0.tier == "L0" })
        #expect(l0.slaMs == 100 && l0.steps >= 1 && l0.worstMs != nil)
        // The reaper schedules the restart as the exit happens; the health tick (every 100 ms)
        // reports the return. Whether a tick sees the agent `exited` or already `unknown` before
        // its first heartbeat depends on how busy the machine is, so neither is required.
        #expect(eventually(timeout: 10) { try events(lead).filter { $0.agent == "w1" }.last?.kind == "alive" })
        let killedAtMs = Int64(killedAt.timeIntervalSince1970 * 1000) - 5
        let w1Events = try events(lead).filter { $0.agent == "w1" && $0.atMs >= killedAtMs }.map(\.kind)
        // With w1 and the crasher both down, a busy machine can see the node degraded at that
        // moment: the restart is then parked for the level and carried out when it allows.
        #expect(Set(w1Events).isSuperset(of: ["restarted", "alive"]), "\(w1Events)")
        #expect(w1Events.contains("restart_scheduled") || w1Events.contains("awaiting_carried_out"), "\(w1Events)")
        #expect(w1Events.last == "alive")

        // The crasher's restarts back off: at once (the first exit after a start: seed 002's
        // force restart), then 100, 200, 400 ms … (a restart parked while the
        // node was degraded is carried out without a schedule of its own, so steps may be missing).
        #expect(eventually(timeout: 15) {
            try events(lead).filter { $0.agent == "crasher" && $0.kind == "restart_scheduled" }.count >= 4
        })
        let delays = try events(lead).filter { $0.agent == "crasher" && $0.kind == "restart_scheduled" }.prefix(4).map(\.detail)
        let doublings = Set(["in 0 ms"] + (0..<12).map { "in \(100 << $0) ms" })
        #expect(delays.first == "in 0 ms" && delays.allSatisfy(doublings.contains), "\(delays)")
        let milliseconds = delays.compactMap { Int($0.split(separator: " ")[1]) }
        #expect(milliseconds.count == 4 && zip(milliseconds, milliseconds.dropFirst()).allSatisfy { $0 < $1 }, "\(delays)")
        let logs = try runPimesh(["logs", "crasher", "--data-dir", dataDir])
        #expect(logs.status == 0)
        #expect(logs.output.contains("crashing"))
        #expect(logs.output.contains("--- pid "))

        // The operator's heal restarts w2 at once.
        let w2Before = try #require(try agent(lead, "w2").supervision?.pid)
        let heal = try runPimesh(["heal", "w2", "--data-dir", dataDir])
        #expect(heal.status == 0)
        #expect(heal.output.contains("w2: killed pid \(w2Before)"))
        #expect(eventually(timeout: 3) { alive(lead, "w2") && pid(lead, "w2").map { $0 != w2Before } == true })
        let unknown = try runPimesh(["heal", "nobody", "--data-dir", dataDir])
        #expect(unknown.status != 0)
        #expect(unknown.output.contains("no agent with id or name \"nobody\""))

        // Stopping the lead stops its agents.
        let pids = try lead.agents().compactMap { $0.supervision?.pid }
        #expect(lead.terminate() == 0)
        #expect(pids.allSatisfy { kill($0, 0) != 0 })
    }

    func environment(of pid: Int32) throws -> [String: String] {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))
        var values: [String: String] = [:]
        for entry in bytes.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { continue }
            values[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        return values
    }

    /// What a running supervised agent was started with. Its secret came through a pipe that
    /// it read and closed, so it is in no environment: it is read from the lead's store.
    func credentials(of pid: Int32, name: String) throws -> AgentCredentials {
        var values = try environment(of: pid)
        #expect(values["PIMESH_AGENT_SECRET"] == nil, "the secret is not in the environment")
        values["PIMESH_AGENT_SECRET_FD"] = nil
        let script = """
            import sqlite3, sys
            row = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True, timeout=20).execute(
                'SELECT lower(hex(secret)) FROM agents WHERE name = ?', (sys.argv[2],)).fetchone()
            print(row[0])
            """
        let secret = try runProcess("/usr/bin/python3", ["-c", script, dataDir + "/pimesh.db", name])
        try #require(secret.status == 0, "\(secret.output)")
        values["PIMESH_AGENT_SECRET"] = secret.output.trimmingCharacters(in: .whitespacesAndNewlines)
        return try AgentCredentials.fromEnvironment(values)
    }

    /// Agents start their iterations from the wall clock, which a Pi steps back (fake-hwclock's
    /// time at boot after a power cut, an NTP correction). The lead hands a restarted agent its
    /// last accepted iteration, or every heartbeat would be dropped as a replay until the clock
    /// caught up, and the agent restarted again and again meanwhile.
    @Test func anAgentRestartedAfterTheClockSteppedBackIsNotTakenForAReplay() throws {
        try agentManifest("stepped")
        let lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 5) { alive(lead, "stepped") })
        let first = try #require(pid(lead, "stepped"))
        #expect(try environment(of: first)["PIMESH_HEARTBEAT_LAST_ITERATION"] == nil, "a new agent has no iteration yet")

        // One heartbeat signed with the agent's key as it was an hour ahead of the clock now.
        var credentials = try self.credentials(of: first, name: "stepped")
        let hourAhead = UInt64(Clock.wallMilliseconds() + 3_600_000) * 1000
        credentials.lastAcceptedIteration = hourAhead
        let before = try HeartbeatSender(credentials: credentials)
        #expect(try before.send(state: .ready, queueDepth: 0, progress: 0) == hourAhead + 1)
        #expect(eventually(timeout: 5) { try agent(lead, "stepped").iteration == hourAhead + 1 })

        // Handed the floor, lowered to the clock's allowance ahead of now (30 s): replays above
        // it carry old timestamps, which are dropped as stale.
        let killedAtMs = Clock.wallMilliseconds()
        kill(first, SIGKILL)
        #expect(eventually(timeout: 10) { pid(lead, "stepped").map { $0 != first } == true })
        let second = try #require(pid(lead, "stepped"))
        let handed = try #require(try environment(of: second)["PIMESH_HEARTBEAT_LAST_ITERATION"].flatMap(UInt64.init))
        #expect(handed >= UInt64(killedAtMs + 30_000) * 1000 && handed <= UInt64(Clock.wallMilliseconds() + 30_000) * 1000, "\(handed)")
        #expect(eventually(timeout: 10) { try alive(lead, "stepped") && (agent(lead, "stepped").iteration ?? 0) > handed })
        #expect(pid(lead, "stepped") == second, "restarted once, not again and again")
        // A heartbeat the killed process sent above the new floor (queued, or replayed) is stale.
        let stale = try lead.status().heartbeats.dropped["stale", default: 0]
        credentials.lastAcceptedIteration = hourAhead + 5
        _ = try HeartbeatSender(credentials: credentials).send(state: .ready, queueDepth: 0, progress: 0, timestampMs: killedAtMs)
        #expect(eventually(timeout: 5) { try lead.status().heartbeats.dropped["stale", default: 0] == stale + 1 })
        #expect(try (agent(lead, "stepped").iteration ?? .max) < hourAhead)
        // The new process's heartbeats are not taken for replays.
        let replayed = try lead.status().heartbeats.dropped["replayed", default: 0]
        let now = try #require(try agent(lead, "stepped").iteration)
        #expect(eventually(timeout: 10) { (try agent(lead, "stepped").iteration ?? 0) >= now + 4 })
        #expect(try lead.status().heartbeats.dropped["replayed", default: 0] == replayed)

        // One signed heartbeat at the top of the range (a bug, or someone with the secret) shuts
        // the process's heartbeats out; restarted (here by the operator: alone on its node, it
        // makes the node EMERGENCY, where the lead waits for one), it gets a sane floor and lives.
        var poisoned = try self.credentials(of: second, name: "stepped")
        poisoned.lastAcceptedIteration = .max - 1
        #expect(try HeartbeatSender(credentials: poisoned).send(state: .ready, queueDepth: 0, progress: 0) == .max)
        #expect(eventually(timeout: 5) { try agent(lead, "stepped").iteration == .max })
        #expect(eventually(timeout: 10) { condition(lead, "stepped") == "hung" })
        let heal = try runPimesh(["heal", "stepped", "--data-dir", dataDir])
        #expect(heal.status == 0, "\(heal.output)")
        #expect(eventually(timeout: 10) { pid(lead, "stepped").map { $0 != second } == true }, "the shut-out agent was restarted")
        let third = try #require(pid(lead, "stepped"))
        let floor = try #require(try environment(of: third)["PIMESH_HEARTBEAT_LAST_ITERATION"].flatMap(UInt64.init))
        #expect(floor <= UInt64(Clock.wallMilliseconds() + 30_000) * 1000, "\(floor)")
        #expect(eventually(timeout: 10) { try alive(lead, "stepped") && (agent(lead, "stepped").iteration ?? .max) < .max })
    }

    @Test func freezeIsNotSuspicionButSIGSTOPIsAHang() throws {
        // Four agents: one hung leaves 75 % healthy (MODERATE), where L1 healing still runs alone.
        for name in ["cold", "stuck", "fine1", "fine2"] { try agentManifest(name) }
        let lead = try startLead(config: #"{"supervision": {"heal_after_ms": 1500}}"#)
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 5) { ["cold", "stuck", "fine1", "fine2"].allSatisfy { alive(lead, $0) } })

        let cold = try #require(try agent(lead, "cold").supervision?.pid)
        let freeze = try runPimesh(["freeze", "cold", "--data-dir", dataDir])
        #expect(freeze.status == 0, "\(freeze.output)")
        #expect(freeze.output.contains("frozen (pid \(cold)"))
        #expect(eventually(timeout: 1) { processState(cold) == "T" })
        Thread.sleep(forTimeInterval: 2)
        #expect(try agent(lead, "cold").health?.condition == "frozen")
        #expect(try agent(lead, "cold").supervision?.frozen == true)
        #expect(try events(lead).filter { $0.agent == "cold" && ["suspected", "hung"].contains($0.kind) }.isEmpty)
        #expect(try runPimesh(["thaw", "cold", "--data-dir", dataDir]).status == 0)
        #expect(eventually(timeout: 2) { alive(lead, "cold") })
        #expect(try agent(lead, "cold").supervision?.pid == cold, "thawed, not restarted")

        // SIGSTOP from outside: the process is alive but silent, which is a HANG, within a second.
        let stuck = try #require(try agent(lead, "stuck").supervision?.pid)
        let stoppedAt = Date()
        kill(stuck, SIGSTOP)
        #expect(eventually(timeout: 3) { try agent(lead, "stuck").health?.condition == "hung" })
        let hang = try #require(try events(lead).first { $0.agent == "stuck" && $0.kind == "hung" })
        let detectedAfterMs = Double(hang.atMs) - stoppedAt.timeIntervalSince1970 * 1000
        #expect(detectedAfterMs < 1200, "HANG after \(detectedAfterMs) ms")
        #expect(hang.detail.contains("the process is alive"))
        // Still hung after heal_after_ms: the lead restarts it (L1, automatic while FULL).
        #expect(eventually(timeout: 5) { alive(lead, "stuck") && pid(lead, "stuck").map { $0 != stuck } == true })
        #expect(try events(lead).contains { $0.agent == "stuck" && $0.kind == "restarting" && $0.tier == "L1" })
    }

    @Test func orphanedTasksMigrateAndNoneIsLostOrRunTwice() throws {
        for name in ["o1", "o2", "o3"] { try agentManifest(name) }
        let lead = try startLead(config: #"{"supervision": {"work_stealing": false}}"#)
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 5) { ["o1", "o2", "o3"].allSatisfy { alive(lead, $0) } })
        let client = try lead.client()
        var ids: [String] = []
        for index in 0..<9 {
            let body = Array(#"{"capability": "work", "weight": 4, "idempotency_key": "orphan-\#(index)"}"#.utf8)
            let view = try APICoding.decode(TaskView.self, from: try client.post("/v1/tasks", json: body))
            #expect(view.decision == "SEND_NOW")
            ids.append(view.id)
        }
        Thread.sleep(forTimeInterval: 0.3)
        let holder = try lead.agents().filter { $0.name.hasPrefix("o") }.max { $0.outstandingTasks < $1.outstandingTasks }!
        #expect(holder.outstandingTasks >= 2)
        let victim = try #require(holder.supervision?.pid)
        kill(victim, SIGKILL)

        var finished: [TaskView] = []
        #expect(eventually(timeout: 20) {
            finished = try ids.map { try APICoding.decode(TaskView.self, from: client.get("/v1/tasks/\($0)")) }
            return finished.allSatisfy(\.isFinished)
        })
        #expect(finished.allSatisfy { $0.state == "succeeded" }, "\(finished.map(\.state))")
        // Each ran to completion once: one result each, none from the killed process.
        #expect(finished.allSatisfy { !($0.result ?? "").contains("pid \(victim))") })
        let status = try lead.status()
        #expect(status.tasks.duplicateResults == 0)
        #expect(status.tasks.succeeded == 9)
        let migration = try #require(try events(lead).first { $0.kind == "orphans_migrated" && $0.agent == holder.name })
        #expect(migration.detail.contains("sent to live agents by the hash ring"))
    }

    @Test func theWatchdogRestartsAHungAgentAndAttachedAgentsAreHealedByCommand() throws {
        try agentManifest("staller", capabilities: ["stall"], args: ["--behaviour", "hang"], stableAfterS: 60)
        for name in ["h1", "h2", "h3"] { try agentManifest(name) }
        let healed = dataDir + "/healed"
        try manifest(
            "ext",
            #"{"name": "ext", "mode": "attached", "heal_command": ["/bin/sh", "-c", "echo healed {name} >> \#(healed)"]}"#)
        let lead = try startLead(config: #"{"supervision": {"hang_after_ms": 1000, "heal_after_ms": 500}}"#)
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 5) { ["staller", "h1", "h2", "h3"].allSatisfy { alive(lead, $0) } })
        let client = try lead.client()
        _ = try client.post("/v1/tasks", json: Array(#"{"capability": "stall"}"#.utf8))
        // Heartbeats keep coming, progress stops: HANG by the watchdog, then a restart.
        #expect(eventually(timeout: 6) { try events(lead).contains { $0.agent == "staller" && $0.kind == "hung" } })
        let hang = try #require(try events(lead).first { $0.agent == "staller" && $0.kind == "hung" })
        #expect(hang.detail.contains("holds work but made no progress"))
        #expect(eventually(timeout: 4) { try events(lead).contains { $0.agent == "staller" && $0.kind == "restarting" } })

        // An attached agent registers itself, heartbeats, then goes silent.
        let credentials = try client.register(.init(name: "ext"))
        let beats = try HeartbeatThread(credentials: credentials)
        #expect(eventually(timeout: 3) { alive(lead, "ext") })
        Thread.sleep(forTimeInterval: 2.2)  // the lead adopts attached manifests every 2 s
        beats.stop()
        #expect(eventually(timeout: 5) { try events(lead).contains { $0.agent == "ext" && $0.kind == "suspected" } })
        #expect(eventually(timeout: 5) { (try? String(contentsOfFile: healed, encoding: .utf8)) == "healed ext\n" })
        #expect(try events(lead).contains { $0.agent == "ext" && $0.kind == "heal_command" && $0.tier == "L1" })
        let freeze = try runPimesh(["freeze", "ext", "--data-dir", dataDir])
        #expect(freeze.status != 0)
        #expect(freeze.output.contains("attached"))
    }

    @Test func overTheRAMBudgetTheNodeShedsAndAnAgentOverItsLimitIsRestarted() throws {
        for name in ["m1", "m2", "m3"] { try agentManifest(name) }
        try manifest(
            "fat",
            #"{"name": "fat", "command": "\#(LeadProcess.binary)", "args": ["sim-agent"], "capabilities": ["work"], "memory_limit_mb": 1}"#)
        let lead = try startLead(config: #"{"supervision": {"ram_budget_mb": 1}}"#)
        defer { _ = lead.terminate() }
        // Four agents of a few MiB each against a 1 MiB budget: over it within a second of reading.
        #expect(eventually(timeout: 6) { try events(lead).contains { $0.kind == "ram_budget_exceeded" } })
        let health = try #require(try lead.status().health)
        #expect(["DEGRADED_MODERATE", "DEGRADED_SEVERE", "EMERGENCY"].contains(health.level))
        #expect((health.agentsMemoryBytes ?? 0) > 1 << 20)
        #expect(health.ramBudgetBytes == 1 << 20)
        let client = try lead.client()
        let background = try APICoding.decode(
            TaskView.self, from: try client.post("/v1/tasks", json: Array(#"{"capability": "work", "priority": 0}"#.utf8)))
        #expect(background.decision == "SKIP")
        #expect(background.skipCode == "shed")
        // The level sheds priority 0; the resource-siege playbook may already shed up to 1.
        #expect(background.skipReason?.contains("sheds tasks below priority") == true, "\(background)")
        // The agent over its own limit is restarted (L1), with the reason.
        #expect(eventually(timeout: 6) {
            try events(lead).contains { $0.agent == "fat" && $0.kind == "restarting" && $0.detail.contains("memory_limit_mb 1") }
        })
        let metrics = String(decoding: try lead.client().http.request("GET", "/metrics").body, as: UTF8.self)
        #expect(metrics.contains("pimesh_degradation_level"))
        #expect(metrics.contains("pimesh_agents_health{condition=\"alive\"}"))
    }

    @Test func aFrozenAgentsWaitingWorkIsStolenByALiveOne() throws {
        for name in ["t1", "t2", "t3"] { try agentManifest(name, capabilities: ["steal"]) }
        let lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 5) { ["t1", "t2", "t3"].allSatisfy { alive(lead, $0) } })
        let client = try lead.client()
        // Each agent works on one task at a time (weight 6: about 600 ms each); the rest waits in
        // its inbox, where stealing may move it.
        var ids: [String] = []
        var routedTo: [String: Int] = [:]
        for _ in 0..<12 {
            let view = try APICoding.decode(
                TaskView.self, from: try client.post("/v1/tasks", json: Array(#"{"capability": "steal", "weight": 6}"#.utf8)))
            ids.append(view.id)
            if let agent = view.agentName { routedTo[agent, default: 0] += 1 }
        }
        // The router spreads by impedance, not evenly: the agent given the most has work waiting.
        let frozen = try #require(routedTo.max { $0.value < $1.value }?.key)
        #expect(try runPimesh(["freeze", frozen, "--data-dir", dataDir]).status == 0)
        // Generous: beside stress-ng the health tick that steals ran later than 3 s once.
        #expect(eventually(timeout: 10) { try events(lead).contains { $0.kind == "work_stolen" && $0.detail.contains("from \(frozen)") } })
        #expect(try runPimesh(["thaw", frozen, "--data-dir", dataDir]).status == 0)
        var finished: [TaskView] = []
        #expect(eventually(timeout: 20) {
            finished = try ids.map { try APICoding.decode(TaskView.self, from: client.get("/v1/tasks/\($0)")) }
            return finished.allSatisfy(\.isFinished)
        })
        #expect(finished.allSatisfy { $0.state == "succeeded" }, "\(finished.map { "\($0.state) \($0.agentName ?? "-") attempts \($0.attempts) \($0.error ?? "")" })")
        #expect(try lead.status().tasks.duplicateResults == 0)
    }

    /// Processes whose environment names them agent `name`: the lead's children and any copy.
    func processes(of name: String) -> [Int32] {
        let marker = Array("PIMESH_AGENT_NAME=\(name)".utf8)
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
        return pids.filter { pid in
            guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            return environ.split(separator: 0).contains { Array($0) == marker }
        }
    }

    func startLead(apiPort: Int, heartbeatPort: Int) throws -> (LeadProcess, readyAfter: TimeInterval) {
        let path = dataDir + "/pimesh.json"
        if !FileManager.default.fileExists(atPath: path) { try "{}".write(toFile: path, atomically: true, encoding: .utf8) }
        let launchedAt = Date()
        let lead = try LeadProcess(dataDir: dataDir, apiPort: apiPort, heartbeatPort: heartbeatPort, extraArguments: ["--config", path])
        _ = try lead.waitReady()
        return (lead, Date().timeIntervalSince(launchedAt))
    }

    /// Issue 12: `kill -9` of the lead leaves its agents running; the next lead on the same data
    /// dir and ports takes them back instead of starting second copies.
    @Test func aLeadStartedAfterAKill9AdoptsTheAgentsItLeftRunning() throws {
        let names = (1...5).map { "keeper\($0)" }
        for name in names { try agentManifest(name) }
        let apiPort = freeLoopbackPort(), heartbeatPort = freeLoopbackPort(type: SOCK_DGRAM)
        let (first, _) = try startLead(apiPort: apiPort, heartbeatPort: heartbeatPort)
        #expect(eventually(timeout: 10) { names.allSatisfy { alive(first, $0) } })
        var pids: [String: Int32] = [:]
        for name in names { pids[name] = try #require(pid(first, name)) }

        first.kill9()
        let killedAt = Date()
        let (second, readyAfter) = try startLead(apiPort: apiPort, heartbeatPort: heartbeatPort)
        defer { _ = second.terminate() }
        #expect(readyAfter < 1, "the new lead was ready \(readyAfter) s after it was started")
        // Heard again: every agent's heartbeat reached the new lead within 2 s of the kill.
        var heardAt = Date.distantFuture
        if eventually(timeout: 10, { try names.allSatisfy { try agent(second, $0).lastHeartbeatMsAgo != nil } }) { heardAt = Date() }
        #expect(heardAt.timeIntervalSince(killedAt) < 2, "heartbeats reached the new lead \(heardAt.timeIntervalSince(killedAt)) s after the kill")
        #expect(eventually(timeout: 10) { names.allSatisfy { alive(second, $0) } })
        for name in names {
            #expect(pid(second, name) == pids[name], "\(name) is supervised again as the same process")
            #expect(processes(of: name) == [pids[name]!], "\(name) runs once")
        }
        let adopted = try events(second).filter { $0.kind == "adopted" }.compactMap(\.agent)
        #expect(Set(adopted) == Set(names))
        #expect(try !events(second).contains { $0.kind == "started" || $0.kind == "restarted" })
        // Its output still reaches its log through the FIFO the first lead made.
        let log = try String(contentsOfFile: try #require(agent(second, "keeper1").supervision?.log), encoding: .utf8)
        #expect(log.contains("adopted by lead pid \(second.process.processIdentifier)"))

        // Adopted agents are supervised: a kill -9 is seen at once and restarted.
        kill(pids["keeper1"]!, SIGKILL)
        #expect(eventually(timeout: 5) { alive(second, "keeper1") && pid(second, "keeper1").map { $0 != pids["keeper1"] } == true })
        #expect(processes(of: "keeper1").count == 1)

        // A clean stop stops the adopted agents too.
        #expect(second.terminate() == 0)
        for name in names { #expect(eventually(timeout: 5) { processes(of: name).isEmpty }, "\(name) stopped with the lead") }
    }

    /// What cannot be adopted is not: an agent whose manifest changed while no lead ran is
    /// started again once, one whose manifest is gone is stopped, and a recycled pid in the
    /// record is never taken for an agent.
    @Test func aChangedManifestRestartsOnceAndARemovedOneStopsTheOrphan() throws {
        try agentManifest("changing")
        try agentManifest("removed")
        let apiPort = freeLoopbackPort(), heartbeatPort = freeLoopbackPort(type: SOCK_DGRAM)
        let (first, _) = try startLead(apiPort: apiPort, heartbeatPort: heartbeatPort)
        #expect(eventually(timeout: 10) { alive(first, "changing") && alive(first, "removed") })
        let changingPID = try #require(pid(first, "changing"))
        #expect(pid(first, "removed") != nil)
        first.kill9()

        try manifest(
            "changing",
            """
            {"name": "changing", "command": "\(LeadProcess.binary)", "args": ["sim-agent"], "capabilities": ["work"], "env": {"EXTRA": "1"},
             "restart": {"stable_after_s": 1}}
            """)
        try FileManager.default.removeItem(atPath: dataDir + "/agents.d/removed.json")
        let (second, _) = try startLead(apiPort: apiPort, heartbeatPort: heartbeatPort)
        defer { _ = second.terminate() }
        #expect(eventually(timeout: 10) { alive(second, "changing") && pid(second, "changing").map { $0 != changingPID } == true })
        #expect(eventually(timeout: 10) { processes(of: "changing").count == 1 && processes(of: "removed").isEmpty })
        let kinds = try events(second).map { "\($0.kind) \($0.agent ?? "")" }
        #expect(kinds.contains("orphan_stopped removed"))
        #expect(kinds.filter { $0 == "restarting changing" }.count == 1)
    }

    /// A manifest with a typo after a restart must not kill the agent it names: the agent is
    /// neither adopted nor stopped, and stays in the record for the lead after the fix.
    @Test func aManifestRefusedAfterARestartLeavesItsRunningAgentAlone() throws {
        try agentManifest("typo")
        let apiPort = freeLoopbackPort(), heartbeatPort = freeLoopbackPort(type: SOCK_DGRAM)
        let (first, _) = try startLead(apiPort: apiPort, heartbeatPort: heartbeatPort)
        #expect(eventually(timeout: 10) { alive(first, "typo") })
        let running = try #require(pid(first, "typo"))
        first.kill9()
        try manifest("typo", #"{"name": "typo", "command": "\#(LeadProcess.binary)", "args": ["sim-agent"], "restart": {"policy": "sometimes"}}"#)
        let (second, _) = try startLead(apiPort: apiPort, heartbeatPort: heartbeatPort)
        #expect(try #require(try second.status().health).refusedManifests.contains { $0.contains("typo.json") })
        Thread.sleep(forTimeInterval: 1)
        #expect(processes(of: "typo") == [running])
        let record = try String(contentsOfFile: dataDir + "/run/supervised", encoding: .utf8)
        #expect(record.contains("typo \(running) "))
        #expect(second.terminate() == 0)
        kill(-running, SIGKILL)
    }
}
