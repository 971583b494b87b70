import Foundation
import PimeshAgent
import PimeshCore
import Testing

/// Playbooks, root cause, rollback and the DiRT drills against a real lead with real children
/// (docs/incidents.md): what an operator sees in `pimesh incidents show` after each.
@Suite(.serialized) struct PlaybookEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func manifest(_ name: String, _ json: String) throws {
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try json.write(toFile: dataDir + "/agents.d/\(name).json", atomically: true, encoding: .utf8)
    }

    func worker(_ name: String, critical: Bool = false) -> String {
        #"{"name": "\#(name)", "command": "\#(LeadProcess.binary)", "args": ["agent"], "capabilities": ["work"], "critical": \#(critical)}"#
    }

    func fleet(_ count: Int, critical: Int = 0) throws {
        for i in 1...count { try manifest("w\(i)", worker("w\(i)", critical: i <= critical)) }
    }

    func startLead(_ incidents: String = #""observation_window_s": 2"#) throws -> LeadProcess {
        let path = dataDir + "/pimesh.json"
        try #"{"incidents": {\#(incidents)}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", path])
        _ = try lead.waitReady(timeout: 30)
        return lead
    }

    func allAlive(_ lead: LeadProcess, _ count: Int) -> Bool {
        ((try? lead.agents()) ?? []).filter { $0.health?.condition == "alive" }.count == count
    }

    func json(_ arguments: [String]) throws -> (status: Int32, value: Any?) {
        let run = try runPimesh(arguments + ["--data-dir", dataDir, "--json"])
        return (run.status, try? JSONSerialization.jsonObject(with: Data(run.output.utf8)))
    }

    func incidents() throws -> [[String: Any]] {
        try json(["incidents", "list"]).value as? [[String: Any]] ?? []
    }

    func incident(_ id: Any?) throws -> [String: Any] {
        try json(["incidents", "show", "\(id ?? 0)"]).value as? [String: Any] ?? [:]
    }

    func timeline(_ incident: [String: Any]) -> [(kind: String, detail: String)] {
        (incident["timeline"] as? [[String: Any]] ?? []).map { ($0["kind"] as? String ?? "", $0["detail"] as? String ?? "") }
    }

    @Test func threeCriticalAgentsKilledRunTheEmergencyPlaybookAndNoTaskIsLost() throws {
        try fleet(12, critical: 3)
        let lead = try startLead()
        #expect(eventually(timeout: 30) { allAlive(lead, 12) })
        let client = try lead.client()
        var ids: [String] = []
        for index in 0..<30 {
            ids.append(try client.submit(LeadClient.TaskRequest(capability: "work", payload: #"{"n":\#(index)}"#, weight: 0)).id)
        }
        let drill = try json(["drill", "kill", "--agent", "w1", "--agent", "w2", "--agent", "w3", "--yes"])
        #expect(drill.status == 0)
        for index in 30..<40 {
            ids.append(try client.submit(LeadClient.TaskRequest(capability: "work", payload: #"{"n":\#(index)}"#, weight: 0)).id)
        }
        var emergency: [String: Any] = [:]
        #expect(eventually(timeout: 60) {
            guard let listed = try incidents().first(where: { $0["severity"] as? String == "SEV1" }) else { return false }
            emergency = try incident(listed["id"])
            return (emergency["playbook_runs"] as? [[String: Any]])?.isEmpty == false
        })
        #expect(emergency["kind"] as? String == "critical_agents_down")
        let run = try #require((emergency["playbook_runs"] as? [[String: Any]])?.first)
        #expect(run["playbook"] as? String == "emergency_recovery")
        #expect(run["success"] as? Bool == true, "\(run)")
        #expect((run["agents_recovered"] as? Int ?? 0) >= 2, "seed 002: at least 2 of 3 critical agents recovered")
        #expect((run["execution_ms"] as? Int ?? .max) < 120_000)
        let kinds = timeline(emergency).map(\.kind)
        for kind in ["playbook_started", "playbook_step", "root_cause", "playbook_finished"] { #expect(kinds.contains(kind), "\(kinds)") }
        // Seed 002: zero data loss. Every accepted task ends, and ends once.
        #expect(eventually(timeout: 60) { ids.allSatisfy { (try? client.task(id: $0).state) == "succeeded" } })
        // Each ended once: as many successes as tasks. An agent whose result post timed out on a
        // loaded machine may post it again; the lead refuses that copy (duplicate_results), so
        // it is not counted here (a stressed make test saw one).
        let counted = try lead.status().tasks
        #expect(counted.succeeded == ids.count, "\(counted.succeeded) successes for \(ids.count) tasks")
        #expect(counted.failed == 0)
        // The post-mortem carries the execution log.
        #expect(eventually(timeout: 30) { (try incidents().first { $0["severity"] as? String == "SEV1" })?["state"] as? String == "resolved" })
        let postmortem = try runPimesh(["incidents", "postmortem", "\(emergency["id"] ?? 0)", "--data-dir", dataDir]).output
        #expect(postmortem.contains("## Playbooks run\n\n- emergency_recovery: "), "\(postmortem)")
    }

    @Test func aCrashLoopAfterAManifestChangeIsTracedToTheChangeAndRolledBack() throws {
        try fleet(3)
        let lead = try startLead()
        #expect(eventually(timeout: 30) { allAlive(lead, 3) })
        let none = try runPimesh(["agent", "rollback", "w3", "--data-dir", dataDir])
        #expect(none.status == 1)
        #expect(none.output.contains("has no earlier manifest to roll back to"), "\(none.output)")
        // The operator ships a broken change: the program exits at once.
        try manifest("w2", #"{"name": "w2", "command": "/bin/false", "capabilities": ["work"]}"#)
        #expect(try runPimesh(["reload", "--data-dir", dataDir]).status == 0)
        var rolledBack: [String: Any] = [:]
        #expect(eventually(timeout: 90) {
            guard let listed = try incidents().first(where: { ($0["agents"] as? [String])?.contains("w2") == true }) else { return false }
            rolledBack = try incident(listed["id"])
            // The run is recorded when the playbook finishes, a step or two after the rollback.
            return timeline(rolledBack).contains { $0.kind == "rollback" } && allAlive(lead, 3)
                && (rolledBack["playbook_runs"] as? [[String: Any]])?.isEmpty == false
        })
        let cause = rolledBack["root_cause"] as? String ?? ""
        #expect(cause.hasPrefix("change (confidence 100 %"), "\(cause)")
        #expect(cause.contains("agents.d/w2.json changed"))
        let run = try #require((rolledBack["playbook_runs"] as? [[String: Any]])?.first)
        #expect(run["playbook"] as? String == "single_agent_recovery")
        #expect(run["success"] as? Bool == true, "\(run)")
        #expect((run["execution_ms"] as? Int ?? .max) < 60_000, "inside seed 002's 60 s")
        // The rollback holds while the file still holds the change, and the incident log says so.
        #expect(try lead.agents().first { $0.name == "w2" }?.supervision?.pid != nil)
        #expect(eventually(timeout: 30) { try runPimesh(["incidents", "log", "--data-dir", dataDir]).output.contains(",Yes") })
        let history = dataDir + "/manifest-history/w2.json"
        #expect(try FileManager.default.attributesOfItem(atPath: history)[.posixPermissions] as? Int == 0o600)
        // By hand: a second rollback undoes the first (w2 crash-loops again).
        let again = try runPimesh(["agent", "rollback", "w2", "--data-dir", dataDir])
        #expect(again.status == 0, "\(again.output)")
        #expect(again.output.contains("rolled back"))
    }

    @Test func failingTasksOnThreeCapabilitiesAreAMassFailureWithTheSharedErrorAsCause() throws {
        let lead = try startLead(#""observation_window_s": 2, "mass_failure_sustain_s": 0"#)
        let swarm = try SwarmProcess(dataDir: dataDir, agents: 10, extra: ["--fail-rate", "1"])
        #expect(eventually(timeout: 30) { allAlive(lead, 10) })
        let client = try lead.client()
        for index in 0..<36 {
            let capability = ["sense", "infer", "store"][index % 3]
            _ = try? client.submit(LeadClient.TaskRequest(capability: capability, payload: #"{"n":\#(index)}"#, weight: 0))
        }
        var mass: [String: Any] = [:]
        #expect(eventually(timeout: 60) {
            guard let listed = try incidents().first(where: { ($0["causes"] as? [String])?.contains("mass_failure") == true }) else { return false }
            mass = try incident(listed["id"])
            return mass["root_cause"] != nil && (mass["playbook_runs"] as? [[String: Any]])?.isEmpty == false
        })
        #expect(mass["severity"] as? String == "SEV1")
        let cause = mass["root_cause"] as? String ?? ""
        #expect(cause.hasPrefix("signature ("), "\(cause)")
        #expect(cause.contains("simulated failure"), "\(cause)")
        let run = try #require((mass["playbook_runs"] as? [[String: Any]])?.first)
        #expect(run["playbook"] as? String == "mass_failure")
        withExtendedLifetime(swarm) {}
    }

    @Test func theHangCorruptSnapshotAndSiegeDrillsRecover() throws {
        try fleet(4)
        let lead = try startLead()
        #expect(eventually(timeout: 30) { allAlive(lead, 4) })
        let hang = try json(["drill", "hang", "--agent", "w2", "--yes", "--timeout", "60"])
        let hung = try #require(hang.value as? [String: Any])
        #expect(hang.status == 0, "\(hung)")
        #expect(hung["met"] as? Bool == true)
        #expect((hung["recovered_ms"] as? Int ?? .max) < 60_000)
        #expect((hung["incidents"] as? [String])?.isEmpty == false)

        let corrupt = try json(["drill", "corrupt-snapshot", "--yes", "--timeout", "60"])
        let damaged = try #require(corrupt.value as? [String: Any])
        #expect(corrupt.status == 0, "\(damaged)")
        #expect((damaged["detected_ms"] as? Int ?? .max) <= 200, "seed 002 DIRT02: detected within 0.2 s")
        #expect((damaged["playbooks"] as? [String])?.first?.contains("snapshot_corruption: 2/2 steps") == true, "\(damaged)")
        let quarantine = dataDir + "/spool/quarantine"
        #expect(try FileManager.default.contentsOfDirectory(atPath: quarantine).contains { $0.hasSuffix(".db.lz4") })
        #expect(try FileManager.default.attributesOfItem(atPath: quarantine)[.posixPermissions] as? Int == 0o700)
        let left = try FileManager.default.contentsOfDirectory(atPath: dataDir + "/spool").filter { $0.hasSuffix(".json") }.sorted()
        #expect(!left.isEmpty, "a fresh snapshot replaced the damaged one")
        for manifest in left {
            #expect(try runPimesh(["snapshot", "verify", dataDir + "/spool/" + manifest, "--data-dir", dataDir]).status == 0, "\(manifest) verifies")
        }

        // The bounds of what a drill may ask for, each a 400 naming the field.
        let client = try lead.client()
        for (path, body, field) in [
            ("/v1/drills/siege", #"{"confirm": true, "seconds": 601}"#, "seconds"),
            ("/v1/drills/siege", #"{"confirm": true, "cpu": 65}"#, "cpu"),
            ("/v1/drills/siege", #"{"confirm": true, "memory_mb": 8193}"#, "memory_mb"),
            ("/v1/drills/siege", #"{"seconds": 1}"#, "confirm"),
            ("/v1/drills/corrupt-snapshot", #"{"confirm": true, "timeout_s": 0}"#, "timeout_s"),
            ("/v1/drills/hang", #"{"confirm": true, "agent": ""}"#, "agent"),
        ] {
            do {
                _ = try client.post(path, json: Array(body.utf8))
                Issue.record("\(path) \(body) was accepted")
            } catch let error as LeadClient.APIError {
                #expect(error.status == 400, "\(path) \(body): \(error)")
                #expect(error.message.contains(field), "\(error.message) names \(field)")
            }
        }
        let siege = try json(["drill", "siege", "--cpu", "1", "--memory", "32", "--seconds", "2", "--timeout", "60", "--yes"])
        let held = try #require(siege.value as? [String: Any])
        #expect(siege.status == 0, "\(held)")
        #expect((held["notes"] as? [String])?.contains("no agent failed during the siege") == true)
        // Each drill is in the audit log with its result.
        let audit = try runPimesh(["audit", "tail", "--kind", "drill_result", "--data-dir", dataDir, "--json"]).output
        for drill in ["drill=hang", "drill=corrupt-snapshot", "drill=siege"] { #expect(audit.contains(drill), "\(drill) in \(audit.prefix(600))") }
        withExtendedLifetime(lead) {}
    }

    @Test func stressNgBesideTheLeadOpensNoFalseIncident() throws {
        try fleet(12)
        let lead = try startLead()
        #expect(eventually(timeout: 30) { allAlive(lead, 12) })
        // Process starts it in a process group of its own, which its workers share: one kill
        // stops them all (the runner's blocked signals are inherited, so stress-ng's own
        // --timeout, a SIGALRM, may never fire).
        let stress = Process()
        stress.executableURL = URL(fileURLWithPath: "/usr/bin/stress-ng")
        stress.arguments = ["--cpu", "2", "--vm", "1", "--vm-bytes", "128M", "--quiet"]
        stress.standardOutput = FileHandle.nullDevice
        stress.standardError = FileHandle.nullDevice
        try stress.run()
        defer {
            kill(-stress.processIdentifier, SIGKILL)
            stress.waitUntilExit()
        }
        let siegeEnds = Date().addingTimeInterval(8)
        var during: [[String: Any]] = []
        while Date() < siegeEnds {
            during += try incidents()
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(stress.isRunning, "stress-ng ran for the whole siege (make test installs it)")
        kill(-stress.processIdentifier, SIGKILL)
        // No false incident: nothing about the agents, which kept heartbeating. A node score
        // over 800 is the node's own strain told truly (SEV3 `resources`, no agents), which a
        // second stress-ng beside the tests (the project's flake check) can bring about.
        let false_ = { (incident: [String: Any]) -> Bool in
            incident["kind"] as? String != "resources" || (incident["agents"] as? [String])?.isEmpty == false
        }
        #expect(!during.contains(where: false_), "\(during.filter(false_).prefix(2))")
        // A tick or two after the siege, in case something was about to fire.
        #expect(eventually(timeout: 10) { allAlive(lead, 12) })
        let opened = try incidents()
        #expect(!opened.contains(where: false_), "\(opened.filter(false_))")
    }

    @Test func playbooksDirRefusesABadFileByLineAndKeyAndAnOperatorsPlaybookComesFirst() throws {
        try fleet(2)
        let directory = dataDir + "/playbooks.d"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try """
            {
              "id": "broken",
              "when": { "causes": ["agent_down:"] },
              "slo_s": 30,
              "steps": [
                { "name": "x", "action": "reboot_the_pi", "timeout_s": 5 }
              ]
            }
            """.write(toFile: directory + "/broken.json", atomically: true, encoding: .utf8)
        try """
            {
              "id": "quick_restart",
              "title": "restart and check, nothing else",
              "when": { "causes": ["agent_down:"], "min_severity": "SEV3" },
              "slo_s": 30,
              "steps": [
                { "name": "restart", "action": "restart_agents", "timeout_s": 5 },
                { "name": "check", "action": "health_check", "timeout_s": 5, "retries": 2 }
              ]
            }
            """.write(toFile: directory + "/quick.json", atomically: true, encoding: .utf8)
        let check = try runPimesh(["playbooks", "check", directory])
        #expect(check.status == 78)
        #expect(check.output.contains("broken.json:6: key \"steps[0].action\": \"reboot_the_pi\" is not one of assess, restart_agents"), "\(check.output)")
        #expect(check.output.contains("quick.json: ok (quick_restart, 2 steps)"))
        let lead = try startLead()
        #expect(eventually(timeout: 30) { allAlive(lead, 2) })
        let listing = try #require(try json(["playbooks"]).value as? [String: Any])
        #expect((listing["playbooks"] as? [[String: Any]])?.first?["id"] as? String == "quick_restart")
        #expect((listing["refused"] as? [String])?.first?.contains("broken.json:6") == true)
        kill(try #require(try lead.agents().first { $0.name == "w1" }?.supervision?.pid), SIGKILL)
        var opened: [String: Any] = [:]
        #expect(eventually(timeout: 30) {
            guard let listed = try incidents().first else { return false }
            opened = try incident(listed["id"])
            return (opened["playbook_runs"] as? [[String: Any]])?.isEmpty == false
        })
        #expect((opened["playbook_runs"] as? [[String: Any]])?.first?["playbook"] as? String == "quick_restart")
        #expect((opened["playbook_runs"] as? [[String: Any]])?.first?["steps_total"] as? Int == 2)
    }
}
