import Foundation
import PimeshAgent
import Testing

/// Issue 15: the daily verbs of systemctl and supervisorctl, against a real lead and its children.
extension SupervisionEndToEndTests {
    func condition(_ lead: LeadProcess, _ name: String) -> String? {
        try? agent(lead, name).health?.condition
    }

    @Test func anOperatorStopsStartsAndRestartsOneAgentAndAStopOutlivesALeadRestart() throws {
        try agentManifest("s1")
        try agentManifest("s2")
        try agentManifest("s3", capabilities: ["gpu"])
        var lead = try startLead()
        #expect(eventually(timeout: 8) { ["s1", "s2", "s3"].allSatisfy { alive(lead, $0) } })
        let s1 = try #require(pid(lead, "s1"))
        let s2 = try #require(pid(lead, "s2"))

        let stop = try runPimesh(["agent", "stop", "s1", "--data-dir", dataDir])
        #expect(stop.status == 0, "\(stop.output)")
        #expect(stop.output.contains("s1: stopping pid \(s1) (SIGTERM, SIGKILL after"))
        #expect(eventually(timeout: 8) { pid(lead, "s1") == nil && condition(lead, "s1") == "stopped" })
        #expect(kill(s1, 0) != 0, "the stopped agent's process is gone")
        // Stopped on purpose is not a failure: one agent of three down leaves the node FULL.
        #expect(eventually(timeout: 3) { (try? lead.status().health?.level) == "FULL" })
        #expect(try agent(lead, "s1").supervision?.stopped == true)
        #expect(try runPimesh(["agent", "stop", "s1", "--data-dir", dataDir]).output.contains("s1: already stopped"))

        let restart = try runPimesh(["agent", "restart", "s2", "--data-dir", dataDir])
        #expect(restart.status == 0, "\(restart.output)")
        #expect(eventually(timeout: 8) { alive(lead, "s2") && pid(lead, "s2").map { $0 != s2 } == true })

        let byCapability = try runPimesh(["agent", "stop", "--capability", "gpu", "--data-dir", dataDir])
        #expect(byCapability.status == 0, "\(byCapability.output)")
        #expect(byCapability.output.contains("s3: stopping pid"))
        #expect(eventually(timeout: 8) { condition(lead, "s3") == "stopped" })
        let nobody = try runPimesh(["agent", "stop", "--capability", "tpu", "--data-dir", dataDir])
        #expect(nobody.status == 1)
        #expect(nobody.output.contains("no supervised agent has the capability \"tpu\""))
        let unknown = try runPimesh(["agent", "start", "s9", "--data-dir", dataDir])
        #expect(unknown.status == 1)
        #expect(unknown.output.contains("no agent with id or name \"s9\""))

        // A lead restart starts s2 and leaves the stopped ones stopped.
        #expect(lead.terminate() == 0)
        lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 8) { alive(lead, "s2") })
        #expect(pid(lead, "s1") == nil && pid(lead, "s3") == nil)
        #expect(condition(lead, "s1") == "stopped" && condition(lead, "s3") == "stopped")
        #expect(eventually(timeout: 3) { (try? lead.status().health?.level) == "FULL" })

        let start = try runPimesh(["agent", "start", "--all", "--data-dir", dataDir])
        #expect(start.status == 0, "\(start.output)")
        #expect(start.output.contains("s1: starting") && start.output.contains("s2: already running"))
        #expect(eventually(timeout: 8) { ["s1", "s2", "s3"].allSatisfy { alive(lead, $0) } })
        #expect(try events(lead).contains { $0.agent == "s1" && $0.kind == "starting" && $0.detail.contains("by operator") })
    }

    @Test func reloadAddsRemovesAndChangesManifestsAndLeavesTheRestAlone() throws {
        for name in ["keep", "change", "gone"] { try agentManifest(name) }
        let config = dataDir + "/pimesh.json"
        let lead = try startLead()
        defer { _ = lead.terminate() }
        let swarm = Process()
        swarm.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        swarm.arguments = ["swarm", "--data-dir", dataDir, "--agents", "20", "--duration", "120"]
        swarm.standardOutput = FileHandle.nullDevice
        swarm.standardError = FileHandle.nullDevice
        try swarm.run()
        defer { swarm.terminate(); swarm.waitUntilExit() }
        let swarmAlive = {
            (try? lead.agents().filter { $0.supervision == nil && $0.health?.condition == "alive" }.count) == 20
        }
        #expect(eventually(timeout: 30) { swarmAlive() && ["keep", "change", "gone"].allSatisfy { alive(lead, $0) } })
        let keep = try #require(pid(lead, "keep"))
        let change = try #require(pid(lead, "change"))
        let before = try events(lead).map(\.sequence).max() ?? 0

        try agentManifest("fresh")
        try FileManager.default.removeItem(atPath: dataDir + "/agents.d/gone.json")
        try agentManifest("change", args: ["--fail-rate", "0.1"])
        // The same manifest written again, formatted otherwise: not a change.
        let keepFile = dataDir + "/agents.d/keep.json"
        try (try String(contentsOfFile: keepFile, encoding: .utf8)).replacingOccurrences(of: ", ", with: ",  ")
            .write(toFile: keepFile, atomically: true, encoding: .utf8)
        try #"{"log_level": "debug"}"#.write(toFile: config, atomically: true, encoding: .utf8)

        let reload = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        #expect(reload.status == 0, "\(reload.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(reload.output.utf8)) as? [String: Any])
        let agents = try #require(report["agents"] as? [String: Any])
        #expect(agents["started"] as? [String] == ["fresh"])
        #expect(agents["stopped"] as? [String] == ["gone"])
        #expect(agents["restarted"] as? [String] == ["change"])
        #expect(agents["unchanged"] as? Int == 1)
        #expect(report["needs_restart"] as? [String] == ["log_level"])

        #expect(eventually(timeout: 10) {
            alive(lead, "fresh") && alive(lead, "change") && pid(lead, "change").map { $0 != change } == true
                && pid(lead, "gone") == nil && condition(lead, "gone") == "stopped"
        })
        #expect(pid(lead, "keep") == keep)
        let since = try events(lead).filter { $0.sequence > before }
        let touched = Set(since.filter { ["restarting", "restarted", "stopped", "started", "exited", "suspected"].contains($0.kind) }.compactMap(\.agent))
        #expect(touched.isSubset(of: ["fresh", "change", "gone"]), "\(touched)")
        #expect(swarmAlive())
        #expect((try? lead.status().health?.level) == "FULL")

        // SIGHUP does the same and never kills the lead; a manifest that no longer parses
        // leaves its agent as it was.
        try agentManifest("late")
        try #"{"name": "keep", "command": "x",}"#.write(toFile: keepFile, atomically: true, encoding: .utf8)
        kill(lead.process.processIdentifier, SIGHUP)
        #expect(eventually(timeout: 10) { alive(lead, "late") })
        #expect(lead.process.isRunning)
        #expect(pid(lead, "keep") == keep)
        #expect(try events(lead).contains { $0.kind == "manifest_refused" && $0.detail.contains("keep.json:1:33: not valid JSON: trailing comma") })

        // A config that no longer parses refuses the whole reload.
        try #"{"log_level": }"#.write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try runPimesh(["reload", "--data-dir", dataDir])
        #expect(refused.status == 1)
        #expect(refused.output.contains("pimesh.json:1:15: not valid JSON"))
        #expect(refused.output.contains("nothing was reloaded"))
    }
}
