import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// Issue 13: the node never tips into EMERGENCY by accident. Each test first reproduces what
/// once went wrong: a stopped swarm, silent registrations, a lead restart, a missing program, a
/// second lead on the same ports, a lost database.
@Suite(.serialized) struct CalmEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func manifest(_ name: String, _ json: String) throws {
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try json.write(toFile: dataDir + "/agents.d/\(name).json", atomically: true, encoding: .utf8)
    }

    func workerManifest(_ name: String) throws {
        try manifest(name, #"{"name": "\#(name)", "command": "\#(LeadProcess.binary)", "args": ["agent"], "capabilities": ["work"]}"#)
    }

    func config(_ json: String) throws -> [String] {
        let path = dataDir + "/pimesh.json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return ["--config", path]
    }

    func level(_ lead: LeadProcess) -> String? {
        (try? lead.status())?.health?.level
    }

    func events(_ lead: LeadProcess) throws -> [HealthEvent] {
        try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events?limit=1000")).events
    }

    func conditions(_ lead: LeadProcess) throws -> [String: Int] {
        try #require(try lead.status().health).conditions
    }

    @Test func aStoppedSwarmLeavesAndTheNodeStaysFull() throws {
        try workerManifest("worker")
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let swarm = try SwarmProcess(dataDir: dataDir, agents: 20)
        #expect(eventually(timeout: 20) { try conditions(lead)["alive"] == 21 })
        // Ctrl-C: every simulated agent says goodbye before the swarm exits.
        kill(swarm.process.processIdentifier, SIGINT)
        swarm.process.waitUntilExit()
        let stoppedAt = Date()
        #expect(eventually(timeout: 5) { try conditions(lead)["left"] == 20 })
        #expect(level(lead) == "FULL")
        #expect(Date().timeIntervalSince(stoppedAt) < 2 || level(lead) == "FULL")
        // Still FULL well past the stale limit and phi's threshold, and work is routed.
        Thread.sleep(forTimeInterval: 2)
        #expect(level(lead) == "FULL")
        #expect(try !events(lead).contains { $0.kind == "degradation" })
        let task = try lead.client().submit(.init(capability: "work", payload: "after the swarm"))
        #expect(task.agentName == "worker", "\(task.state) \(task.error ?? "")")
    }

    @Test func silentRegistrationsArePendingThenDepartedAndNeverMoveTheLevel() throws {
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: try config(#"{"agents": {"expire_after_s": 2}}"#))
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let client = try lead.client()
        let one = try client.register(.init(name: "heard", capabilities: ["work"]))
        let beat = try HeartbeatThread(credentials: one)
        defer { beat.stop() }
        for index in 0..<7 { _ = try client.register(.init(name: "ghost\(index)")) }
        #expect(eventually(timeout: 10) { try conditions(lead)["departed"] == 7 })
        #expect(level(lead) == "FULL")
        #expect(try !events(lead).contains { $0.kind == "degradation" })
        let ghost = try #require(try lead.agents().first { $0.name == "ghost0" })
        #expect(ghost.health?.condition == "departed")

        // An agent that leaves is `left` at once; removing one deletes it for good.
        let leaving = try client.register(.init(name: "leaving", capabilities: ["work"]))
        let leavingBeat = try HeartbeatThread(credentials: leaving)
        #expect(eventually(timeout: 10) { try lead.agents().first { $0.name == "leaving" }?.health?.condition == "alive" })
        leavingBeat.stop()
        let left = try LeadClient.forAgent(leaving, dataDir: dataDir).post("/v1/agents/\(leaving.id)/leave", json: Array("{}".utf8))
        // The API's keys are snake_case, this answer's too (docs/api.md).
        let leftJSON = try JSONSerialization.jsonObject(with: Data(left)) as? [String: Any]
        #expect(leftJSON?["tasks_moved"] as? String == "0", "\(String(decoding: left, as: UTF8.self))")
        #expect(eventually(timeout: 5) { try lead.agents().first { $0.name == "leaving" }?.health?.condition == "left" })
        #expect(try runPimesh(["agents", "remove", "ghost0", "--data-dir", dataDir]).status == 0)
        #expect(try !lead.agents().contains { $0.name == "ghost0" })
        // Its heartbeats are nobody's now, and its name is free again.
        _ = try client.register(.init(name: "ghost0"))
        Thread.sleep(forTimeInterval: 1)
        #expect(level(lead) == "FULL")
    }

    @Test func aManifestsAgentCannotBeRemovedWhileTheManifestIsThere() throws {
        try manifest("sleeper", #"{"name": "sleeper", "command": "/bin/sleep", "args": ["600"]}"#)
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let refused = try runPimesh(["agents", "remove", "sleeper", "--data-dir", dataDir])
        #expect(refused.status != 0)
        #expect(refused.output.contains("agents.d/sleeper.json"), "\(refused.output)")
        #expect(try lead.agents().contains { $0.name == "sleeper" })
    }

    @Test func aLeadRestartUnderAHundredAgentsIsNotAnOutage() throws {
        let apiPort = freeLoopbackPort(), heartbeatPort = freeLoopbackPort(type: SOCK_DGRAM)
        var lead = try LeadProcess(dataDir: dataDir, apiPort: apiPort, heartbeatPort: heartbeatPort)
        _ = try lead.waitReady()
        let swarm = try SwarmProcess(dataDir: dataDir, agents: 100, extra: ["--no-work"])
        defer { _ = swarm }
        #expect(eventually(timeout: 30) { try conditions(lead)["alive"] == 100 })
        #expect(lead.terminate() == 0)
        lead = try LeadProcess(dataDir: dataDir, apiPort: apiPort, heartbeatPort: heartbeatPort)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        // Submitted in the first second, before any heartbeat: queued, never shed or skipped.
        let task = try lead.client().submit(.init(capability: "sense", payload: "right after the restart"))
        #expect(task.state != "skipped", "\(task.error ?? "")")
        #expect(eventually(timeout: 10) { try conditions(lead)["alive"] == 100 })
        #expect(eventually(timeout: 10) { try lead.client().task(id: task.id).state != "queued" })
        #expect(try lead.client().task(id: task.id).state != "skipped")
        let degradations = try events(lead).filter { $0.kind == "degradation" }
        #expect(degradations.isEmpty, "\(degradations)")
    }

    @Test func aMissingProgramIsRefusedAtLoadAndACrashLoopReallyGivesUp() throws {
        try manifest("missing", #"{"name": "missing", "command": "no-such-program-anywhere"}"#)
        // A steady agent first: alone, the crasher would be 0 % of the node, EMERGENCY, where
        // restarts wait for an operator instead of backing off to the give-up this test is about.
        try workerManifest("steady")
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        #expect(eventually(timeout: 30) { try conditions(lead)["alive"] == 1 })
        try manifest(
            "crasher",
            #"{"name": "crasher", "command": "/bin/sh", "args": ["-c", "exit 3"], "restart": {"initial_backoff_ms": 10, "max_backoff_ms": 40}}"#)
        let reload = try runPimesh(["reload", "--data-dir", dataDir])
        #expect(reload.output.contains("started     crasher") && reload.output.contains("refused     "), "\(reload.output)")
        let health = try #require(try lead.status().health)
        #expect(health.refusedManifests.contains { $0.contains("missing.json") && $0.contains("no-such-program-anywhere is not an executable program in PATH") })
        #expect(eventually(timeout: 10) { try lead.status().health?.failed == ["crasher"] })
        let view = try #require(try lead.agents().first { $0.name == "crasher" }?.supervision)
        #expect(view.failed)
        let startsWhenFailed = try events(lead).filter { $0.agent == "crasher" && ($0.kind == "restarted" || $0.kind == "started") }.count
        Thread.sleep(forTimeInterval: 1)
        let after = try events(lead).filter { $0.agent == "crasher" && ($0.kind == "restarted" || $0.kind == "started") }.count
        #expect(after == startsWhenFailed, "given up, yet it was started again")
        #expect(try events(lead).contains { $0.kind == "failed" && $0.agent == "crasher" })
        #expect(try !events(lead).contains { $0.agent == "missing" })
        // A given-up agent is a SEV2 incident, and the LEDs say so: two blinks.
        let leds = try runPimesh(["leds", "show", "--json", "--data-dir", dataDir])
        #expect(leds.output.contains(#""alert":"SEV2""#) && leds.output.contains(#""alert_blinks":2"#), "\(leds.output)")
        let open = try runPimesh(["incidents", "list", "--open", "--data-dir", dataDir])
        #expect(open.output.contains("restarts were given up"), "\(open.output)")
        // An operator's heal starts it again.
        #expect(try runPimesh(["heal", "crasher", "--data-dir", dataDir]).status == 0)
        #expect(eventually(timeout: 5) { try lead.status().health?.failed == [] || events(lead).contains { $0.kind == "restarting" } })
    }

    @Test func aSecondLeadOnATakenPortSaysWhichAndWhose() throws {
        let apiPort = freeLoopbackPort(), heartbeatPort = freeLoopbackPort(type: SOCK_DGRAM)
        let first = try LeadProcess(dataDir: dataDir, apiPort: apiPort, heartbeatPort: heartbeatPort)
        defer { _ = first.terminate() }
        _ = try first.waitReady()
        let otherDir = LeadProcess.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: otherDir) }
        let sameHeartbeat = try runPimesh(["run", "--data-dir", otherDir, "--api-port", "0", "--heartbeat-port", String(heartbeatPort)])
        #expect(sameHeartbeat.status == 1)
        #expect(sameHeartbeat.output.contains("heartbeat port 127.0.0.1:\(heartbeatPort)/udp is taken"), "\(sameHeartbeat.output)")
        #expect(sameHeartbeat.output.contains("data dir \(dataDir)"), "\(sameHeartbeat.output)")
        let sameAPI = try runPimesh(["run", "--data-dir", otherDir, "--api-port", String(apiPort), "--heartbeat-port", "0"])
        #expect(sameAPI.status == 1)
        #expect(sameAPI.output.contains("API port 127.0.0.1:\(apiPort)/tcp is taken"), "\(sameAPI.output)")
        // The first lead never noticed.
        #expect(first.process.isRunning)
    }

    @Test func aLostDatabaseIsNeverSilentlyReplaced() throws {
        let lead = try LeadProcess(dataDir: dataDir)
        _ = try lead.waitReady()
        _ = try lead.client().register(.init(name: "remembered"))
        #expect(lead.terminate() == 0)
        let database = dataDir + "/pimesh.db"
        var saved: [String: Data] = [:]
        for suffix in ["", "-wal", "-shm"] { saved[suffix] = FileManager.default.contents(atPath: database + suffix) }
        for (damage, expected) in [("missing", "is missing"), ("empty", "is empty (0 bytes)"), ("garbage", "is not a SQLite database")] {
            try? FileManager.default.removeItem(atPath: database)
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
            switch damage {
            case "empty": FileManager.default.createFile(atPath: database, contents: Data())
            case "garbage": FileManager.default.createFile(atPath: database, contents: Data(repeating: 0x41, count: 8192))
            default: break
            }
            let refused = try runPimesh(["run", "--data-dir", dataDir, "--api-port", "0", "--heartbeat-port", "0"])
            #expect(refused.status == 1, "\(damage)")
            #expect(refused.output.contains("\(database) \(expected)"), "\(damage): \(refused.output)")
            #expect(refused.output.contains("pimesh snapshot restore"), "\(damage)")
            let size = (try? FileManager.default.attributesOfItem(atPath: database)[.size] as? Int) ?? nil
            #expect(size == (damage == "missing" ? nil : damage == "empty" ? 0 : 8192), "\(damage): the damaged file was touched")
        }
        for (suffix, bytes) in saved { try bytes.write(to: URL(fileURLWithPath: database + suffix)) }
        let again = try LeadProcess(dataDir: dataDir)
        defer { _ = again.terminate() }
        _ = try again.waitReady()
        #expect(try again.agents().contains { $0.name == "remembered" })
    }
}
