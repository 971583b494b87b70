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

        // A manifest's name may be the start of another agent's id (review): --all acts on each
        // agent by its whole id, and the name typed alone is refused rather than guessed.
        let lookalike = String(try agent(lead, "s1").id.description.prefix(8))
        try agentManifest(lookalike)
        #expect(try runPimesh(["reload", "--data-dir", dataDir]).status == 0)
        #expect(eventually(timeout: 8) { alive(lead, lookalike) })
        let all = try runPimesh(["agent", "restart", "--all", "--data-dir", dataDir])
        #expect(all.status == 0 && all.output.contains("\(lookalike): ") && all.output.contains("s1: "), "\(all.output)")
        let typed = try runPimesh(["agent", "restart", lookalike, "--data-dir", dataDir])
        #expect(typed.status == 1 && typed.output.contains("start of the id of s1"), "\(typed.output)")
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

    /// What a reload refuses rather than hand an agent (or the lead) over: a FIFO in agents.d,
    /// a second file with a running agent's name, a supervised manifest with the name of an
    /// agent that registered itself, a directory moved away or opened to others.
    @Test func reloadHandsNoAgentOverAndNeverBlocks() throws {
        try agentManifest("a1")
        try agentManifest("a2")
        let lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 8) { alive(lead, "a1") && alive(lead, "a2") })
        let a1 = try #require(pid(lead, "a1"))
        let a2 = try #require(pid(lead, "a2"))
        let client = try lead.client()
        let attached = try client.register(.init(name: "self-made", capabilities: ["work"]))
        let agentsDir = dataDir + "/agents.d"

        // A supervised agent's name cannot be registered: the operator learns which manifest has
        // it, a join-token holder (a stranger) only that a supervised agent does.
        func registrationRefusal(_ registering: LeadClient) -> LeadClient.APIError? {
            do {
                _ = try registering.register(.init(name: "a1", capabilities: ["work"]))
                return nil
            } catch { return error as? LeadClient.APIError }
        }
        let join = try String(contentsOfFile: dataDir + "/join-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let stranger = try #require(registrationRefusal(LeadClient(address: client.http.address, token: join)))
        #expect(stranger.status == 409 && stranger.message == #"the name "a1" belongs to a supervised agent"#, "\(stranger)")
        let byOperator = try #require(registrationRefusal(client))
        #expect(byOperator.status == 409 && byOperator.message.contains(agentsDir + "/a1.json"), "\(byOperator)")

        try manifest("self-made", #"{"name": "self-made", "command": "/bin/sleep", "args": ["1000"]}"#)
        try manifest("0dup", #"{"name": "a1", "command": "/bin/sleep", "args": ["1000"]}"#)
        #expect(mkfifo(agentsDir + "/fifo.json", 0o600) == 0)
        let started = Date()
        let reload = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        #expect(Date().timeIntervalSince(started) < 20, "a reload with a FIFO in agents.d took \(Date().timeIntervalSince(started)) s")
        #expect(reload.status == 0, "\(reload.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(reload.output.utf8)) as? [String: Any])
        let agents = try #require(report["agents"] as? [String: Any])
        let refused = (agents["refused"] as? [String]) ?? []
        #expect(refused.contains { $0.contains("fifo.json") && $0.contains("a FIFO, not a regular file") }, "\(refused)")
        #expect(refused.contains { $0.contains("0dup.json") && $0.contains("already used by \(agentsDir)/a1.json") }, "\(refused)")
        #expect(refused.contains { $0.contains("self-made.json") && $0.contains("registered itself (id \(attached.id))") }, "\(refused)")
        #expect(agents["started"] as? [String] == [] && agents["restarted"] as? [String] == [], "\(agents)")
        #expect(pid(lead, "a1") == a1 && pid(lead, "self-made") == nil)
        // A registration looks agents.d up too: the FIFO holds it up no more than the reload.
        #expect(try client.register(.init(name: "late-comer", capabilities: ["work"])).name == "late-comer")
        let refusedEvents = { try self.events(lead).filter { $0.kind == "manifest_refused" }.count }
        let once = try refusedEvents()
        #expect(once == 3)
        // The same refusals again are not events (nor audit rows) again.
        let again = try runPimesh(["reload", "--data-dir", dataDir])
        // The table's exit status is 1 while files are refused.
        #expect(again.status == 1 && again.output.contains("unchanged   2"), "\(again.output)")
        #expect(try refusedEvents() == once)

        // Moved away or opened to others, agents.d is not read as "no manifests".
        try FileManager.default.moveItem(atPath: agentsDir, toPath: agentsDir + ".moved")
        let moved = try runPimesh(["reload", "--data-dir", dataDir])
        #expect(moved.status == 1 && moved.output.contains("nothing changed"), "\(moved.output)")
        try FileManager.default.moveItem(atPath: agentsDir + ".moved", toPath: agentsDir)
        chmod(agentsDir, 0o777)
        let open = try runPimesh(["reload", "--data-dir", dataDir])
        #expect(open.status == 1 && open.output.contains("is writable by group or others"), "\(open.output)")
        chmod(agentsDir, 0o755)
        #expect(pid(lead, "a1") == a1 && pid(lead, "a2") == a2)
        #expect(alive(lead, "a1") && alive(lead, "a2"))
        #expect(try client.http.request("GET", "/healthz").status == 200)

        // Nor does a restart with the manifest in place (a probe: the lead then supervised the
        // name, kept the registrant's id and secret, and sent the agent's work to whoever held
        // them), while the manifests' own agents come back as they were.
        #expect(lead.terminate() == 0)
        // (Without the duplicate, which at start would be taken over a1.json: its name sorts first.)
        try FileManager.default.removeItem(atPath: agentsDir + "/0dup.json")
        // The store says which rows are whose: a lost manifest history changes nothing.
        try FileManager.default.removeItem(atPath: dataDir + "/manifest-history")
        let restarted = try startLead()
        defer { _ = restarted.terminate() }
        #expect(eventually(timeout: 8) { alive(restarted, "a1") && alive(restarted, "a2") })
        #expect(try events(restarted).contains {
            $0.kind == "manifest_refused" && $0.detail.contains("self-made.json") && $0.detail.contains("registered itself (id \(attached.id))")
        })
        let selfMade = try #require(try restarted.agents().first { $0.name == "self-made" })
        #expect(selfMade.id == attached.id && selfMade.supervision == nil, "\(selfMade)")
        #expect(pid(restarted, "self-made") == nil)

        // Attached is what it may be; turned supervised afterwards, it is refused all the same.
        try manifest("self-made", #"{"name": "self-made", "mode": "attached"}"#)
        let asAttached = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        #expect(!asAttached.output.contains("self-made.json"), "\(asAttached.output)")
        // Its manifest expects it: it may not leave, and only the operator learns where that manifest is.
        do {
            _ = try LeadClient.forAgent(attached, dataDir: dataDir).leave(agentID: attached.id)
            Issue.record("an agent a manifest names left")
        } catch let refusal as LeadClient.APIError {
            #expect(refusal.status == 409 && refusal.message == "self-made is named by a manifest: it cannot leave", "\(refusal)")
        }
        try manifest("self-made", #"{"name": "self-made", "command": "/bin/sleep", "args": ["1000"]}"#)
        let asSupervised = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        #expect(asSupervised.output.contains("registered itself (id \(attached.id))"), "\(asSupervised.output)")
        #expect(pid(restarted, "self-made") == nil)
    }

    @Test func manifestsPastMaxRegisteredAreRefusedAsRegistrationsAre() throws {
        try agentManifest("m1")
        try agentManifest("m2")
        try agentManifest("m3")
        let lead = try startLead(config: #"{"agents": {"max_registered": 2}}"#)
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 8) { alive(lead, "m1") && alive(lead, "m2") })
        let limit = "the lead holds 2 agents, its limit (agents.max_registered)"
        #expect(try events(lead).contains { $0.kind == "manifest_refused" && $0.detail.contains("m3.json") && $0.detail.contains(limit) })
        #expect(try lead.agents().map(\.name).sorted() == ["m1", "m2"])
        let join = try String(contentsOfFile: dataDir + "/join-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let registration = try lead.client().http.request(
            "POST", "/v1/agents", headers: [("Authorization", "Bearer " + join)], body: Array(#"{"name": "walk-in", "capabilities": ["work"]}"#.utf8))
        #expect(registration.status == 507, "\(registration.status) \(String(decoding: registration.body, as: UTF8.self))")

        try agentManifest("m4")
        let reload = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(reload.output.utf8)) as? [String: Any])
        let agents = try #require(report["agents"] as? [String: Any])
        let refused = (agents["refused"] as? [String]) ?? []
        #expect(refused.contains { $0.contains("m4.json") && $0.contains(limit) }, "\(refused)")
        #expect(refused.contains { $0.contains("m3.json") && $0.contains(limit) }, "\(refused)")
        #expect(agents["started"] as? [String] == [], "\(agents)")
        #expect(try lead.agents().count == 2)

        // A manifest renamed at the limit is refused, and the agent it named runs on as it was.
        let m1 = pid(lead, "m1")
        try manifest("m1", #"{"name": "m1-renamed", "command": "\#(LeadProcess.binary)", "args": ["sim-agent"], "capabilities": ["work"]}"#)
        let renamed = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        let renamedReport = try #require(try JSONSerialization.jsonObject(with: Data(renamed.output.utf8)) as? [String: Any])
        let renamedAgents = try #require(renamedReport["agents"] as? [String: Any])
        #expect(((renamedAgents["refused"] as? [String]) ?? []).contains { $0.contains("m1.json") && $0.contains(limit) }, "\(renamed.output)")
        #expect(((renamedAgents["stopped"] as? [String]) ?? []).isEmpty, "\(renamed.output)")
        #expect(alive(lead, "m1") && pid(lead, "m1") == m1)
        try agentManifest("m1")

        // Room made by removing an agent lets the next reload start a waiting manifest.
        try FileManager.default.removeItem(atPath: dataDir + "/agents.d/m2.json")
        #expect(try runPimesh(["reload", "--data-dir", dataDir]).output.contains("m2"))
        #expect(eventually(timeout: 8) { pid(lead, "m2") == nil })
        let removal = try runPimesh(["agents", "remove", "m2", "--data-dir", dataDir])
        #expect(removal.status == 0, "\(removal.output)")
        let after = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        let started = try #require(try JSONSerialization.jsonObject(with: Data(after.output.utf8)) as? [String: Any])
        #expect((started["agents"] as? [String: Any])?["started"] as? [String] == ["m3"], "\(after.output)")
        #expect(eventually(timeout: 8) { alive(lead, "m3") })
    }

    /// A manifest whose agent the store cannot register (here a trigger refuses its row, as a
    /// failing SD card or a store locked too long would) is refused by name, and the reload goes
    /// on with the manifests after it and stops nothing. Thrown out of the reload, that error
    /// left the agents before it half changed and their old processes never signalled.
    @Test func aManifestTheStoreCannotRegisterIsRefusedAndTheReloadGoesOn() throws {
        try agentManifest("steady")
        let lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 8) { alive(lead, "steady") })
        let steady = try #require(pid(lead, "steady"))
        func storeTrigger(_ sql: String) throws {
            let script = "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], timeout=20)\ndb.execute(sys.argv[2])\ndb.commit()\n"
            let changed = try runProcess("/usr/bin/python3", ["-c", script, dataDir + "/pimesh.db", sql])
            try #require(changed.status == 0, "\(changed.output)")
        }
        try storeTrigger(
            "CREATE TRIGGER refuse_poisoned BEFORE INSERT ON agents WHEN NEW.name = 'poisoned' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        try agentManifest("poisoned")
        try agentManifest("later")
        try agentManifest("steady", stableAfterS: 3)
        let reload = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        #expect(reload.status == 0, "\(reload.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(reload.output.utf8)) as? [String: Any], "\(reload.output)")
        let agents = try #require(report["agents"] as? [String: Any])
        let refused = (agents["refused"] as? [String]) ?? []
        #expect(refused.count == 1 && refused.allSatisfy { $0.contains("/poisoned.json: not applied, ") && $0.contains("refused by the test") }, "\(refused)")
        #expect(agents["started"] as? [String] == ["later"], "\(agents)")
        #expect(agents["updated"] as? [String] == ["steady"], "\(agents)")
        #expect(((agents["stopped"] as? [String]) ?? []).isEmpty, "\(agents)")
        #expect(eventually(timeout: 8) { alive(lead, "later") })
        #expect(pid(lead, "poisoned") == nil)
        #expect(pid(lead, "steady") == steady)

        try storeTrigger("DROP TRIGGER refuse_poisoned")
        let again = try runPimesh(["reload", "--json", "--data-dir", dataDir])
        let retried = try #require(try JSONSerialization.jsonObject(with: Data(again.output.utf8)) as? [String: Any], "\(again.output)")
        #expect((retried["agents"] as? [String: Any])?["started"] as? [String] == ["poisoned"], "\(again.output)")
        #expect(eventually(timeout: 8) { alive(lead, "poisoned") })
        #expect(pid(lead, "steady") == steady)

        // At start too: the lead starts, that manifest refused and the others running.
        #expect(lead.terminate() == 0)
        try storeTrigger(
            "CREATE TRIGGER refuse_late BEFORE INSERT ON agents WHEN NEW.name = 'late' BEGIN SELECT RAISE(ABORT, 'refused at start by the test'); END")
        try agentManifest("late")
        let restarted = try startLead()
        defer { _ = restarted.terminate() }
        #expect(eventually(timeout: 8) { alive(restarted, "steady") && alive(restarted, "poisoned") && alive(restarted, "later") })
        let refusedAtStart = try #require(try restarted.status().health).refusedManifests
        #expect(refusedAtStart.count == 1 && refusedAtStart.allSatisfy { $0.contains("/late.json: not applied, ") && $0.contains("refused at start by the test") }, "\(refusedAtStart)")
        #expect(pid(restarted, "late") == nil)
    }

    @Test func logsShowTimesStreamsAndTheLeadsEventsAndFollowAcrossARestart() throws {
        // The last line tries to pass for the lead's event (a carriage return) and to clear the screen.
        let forged = #"printf 'forged\\r2026-01-01T00:00:00.000Z event restarted\\033[2J\\n'"#
        try manifest("talker", #"{"name": "talker", "command": "/bin/sh", "args": ["-c", "echo hello; echo oops >&2; printf 'main.go\\t42\\n'; \#(forged); exec sleep 1000"]}"#)
        let lead = try startLead(config: #"{"supervision": {"start_grace_ms": 600000}}"#)
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 8) { (try? runPimesh(["logs", "talker", "--data-dir", dataDir]).output.contains("forged")) == true })
        let plain = try runPimesh(["logs", "talker", "--data-dir", dataDir])
        #expect(plain.status == 0)
        let rows = plain.output.split(separator: "\n")
        #expect(rows.contains { $0.hasSuffix(" out hello") && $0.hasPrefix("20") })
        #expect(rows.contains { $0.hasSuffix(" out main.go\t42") }, "a tab is left as it is: \(plain.output)")
        #expect(rows.contains { $0.contains(" lead --- pid ") && $0.hasSuffix(" started ---") })
        #expect(rows.contains { $0.contains(" event started") })
        #expect(rows.contains { $0.hasSuffix(#" out forged\u{D}2026-01-01T00:00:00.000Z event restarted\u{1B}[2J"#) }, "\(plain.output)")
        #expect(!plain.output.contains("\r") && !plain.output.contains("\u{1B}"))

        let json = try runPimesh(["logs", "talker", "--json", "--data-dir", dataDir])
        let objects = try json.output.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let hello = try #require(objects.first { $0["text"] as? String == "hello" })
        #expect(hello["stream"] as? String == "out")
        let timeMs = try #require(hello["time_ms"] as? Int64)
        #expect(abs(timeMs - Int64(Date().timeIntervalSince1970 * 1000)) < 600_000)
        #expect((hello["time"] as? String)?.hasSuffix("Z") == true)
        #expect(objects.contains { $0["text"] as? String == "forged\r2026-01-01T00:00:00.000Z event restarted\u{1B}[2J" }, "\(json.output)")

        for count in [["--tail", "1"], ["-n", "1"]] {
            let last = try runPimesh(["logs", "talker", "--no-events", "--data-dir", dataDir] + count)
            #expect(last.output.split(separator: "\n").count == 1, "\(count): \(last.output)")
        }
        #expect(try runPimesh(["logs", "talker", "--since", "1d", "--data-dir", dataDir]).output.contains(" out hello"))
        let badSince = try runPimesh(["logs", "talker", "--since", "ten minutes", "--data-dir", dataDir])
        #expect(badSince.status != 0)
        #expect(badSince.output.contains("is not a duration like 30s"))

        // -f prints what comes next: a restart's event, marker and output.
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        follower.arguments = ["logs", "talker", "-f", "--tail", "0", "--data-dir", dataDir]
        let pipe = Pipe()
        follower.standardOutput = pipe
        let received = LockedText()
        pipe.fileHandleForReading.readabilityHandler = { handle in received.append(String(decoding: handle.availableData, as: UTF8.self)) }
        try follower.run()
        defer {
            follower.terminate()
            follower.waitUntilExit()
            pipe.fileHandleForReading.readabilityHandler = nil
        }
        let before = received.text.components(separatedBy: " out hello").count
        #expect(try runPimesh(["agent", "restart", "talker", "--data-dir", dataDir]).status == 0)
        #expect(eventually(timeout: 15) {
            let text = received.text
            return text.contains(" event restarting") && text.components(separatedBy: " out hello").count > before
        }, "\(received.text)")
    }

    /// Seed 001's console with its defaults: ask's sample, delegate's priority and timeout,
    /// heal auto, freeze --all, broadcast's priority and require-ack.
    @Test func theSeedsConsoleVerbsTakeTheirOptionsAndDefaults() throws {
        for name in ["c1", "c2", "c3"] { try agentManifest(name) }
        let lead = try startLead()
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 8) { ["c1", "c2", "c3"].allSatisfy { alive(lead, $0) } })
        let auto = try runPimesh(["heal", "--data-dir", dataDir])
        #expect(auto.status == 0 && auto.output.contains("nothing awaits an operator"), "\(auto.output)")

        let delegated = try runPimesh(["delegate", "work", "--priority", "3", "--timeout", "30", "--data-dir", dataDir])
        #expect(delegated.status == 0, "\(delegated.output)")
        #expect(try runPimesh(["delegate", "work", "--priority", "7", "--data-dir", dataDir]).output.contains("--priority must be 0, 1, 2 or 3"))

        let sampled = try runPimesh(["ask", "--capability", "work", "--sample-size", "2", "--json", "--data-dir", dataDir])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(sampled.output.utf8)) as? [String: Any])
        #expect(report["targets"] as? Int == 2, "\(sampled.output)")
        let acknowledged = try runPimesh(["broadcast", "--require-ack", "--priority", "3", "--data-dir", dataDir])
        #expect(acknowledged.status == 0, "\(acknowledged.output)")

        let frozen = try runPimesh(["freeze", "--all", "--data-dir", dataDir])
        #expect(frozen.status == 0, "\(frozen.output)")
        #expect(["c1", "c2", "c3"].allSatisfy { frozen.output.contains("\($0): frozen") })
        #expect(eventually(timeout: 3) { ["c1", "c2", "c3"].allSatisfy { condition(lead, $0) == "frozen" } })
        // --json over agents chosen by a selector is one array, whatever their number.
        let thawed = try runPimesh(["thaw", "--capability", "work", "--json", "--data-dir", dataDir])
        #expect(thawed.status == 0, "\(thawed.output)")
        let answers = try #require(try JSONSerialization.jsonObject(with: Data(thawed.output.utf8)) as? [[String: String]], "\(thawed.output)")
        #expect(answers.compactMap { $0["agent"] }.sorted() == ["c1", "c2", "c3"], "\(answers)")
        #expect(eventually(timeout: 8) { ["c1", "c2", "c3"].allSatisfy { alive(lead, $0) } })

        // An agent stopped (or frozen) on purpose is no target of an ask: it would hold back the
        // quorum as silent.
        #expect(try runPimesh(["agent", "stop", "c3", "--data-dir", dataDir]).status == 0)
        #expect(eventually(timeout: 8) { condition(lead, "c3") == "stopped" })
        let asked = try runPimesh(["ask", "--capability", "work", "--json", "--data-dir", dataDir])
        let withoutStopped = try #require(try JSONSerialization.jsonObject(with: Data(asked.output.utf8)) as? [String: Any], "\(asked.output)")
        #expect(withoutStopped["targets"] as? Int == 2 && withoutStopped["silent"] as? Int == 0, "\(asked.output)")

        #expect(try runPimesh(["agents", "--state", "bogus", "--data-dir", dataDir]).output.contains("--state bogus is not one of READY, TRANSIT, CONFLICT"))

        // Followed through a pipe, each batch comes as it happens, not once 4 KiB piled up.
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        let seen = try events(lead).map(\.sequence).max() ?? 0
        follower.arguments = ["events", "--follow", "--json", "--since", String(seen), "--data-dir", dataDir]
        let pipe = Pipe()
        follower.standardOutput = pipe
        try follower.run()
        defer { follower.terminate() }
        #expect(try runPimesh(["agent", "start", "c3", "--data-dir", dataDir]).status == 0)
        let streamed = LockedText()
        pipe.fileHandleForReading.readabilityHandler = { streamed.append(String(decoding: $0.availableData, as: UTF8.self)) }
        #expect(eventually(timeout: 10) { streamed.text.contains(#""agent":"c3""#) }, "\(streamed.text)")
        pipe.fileHandleForReading.readabilityHandler = nil

        let help = try runPimesh(["ask", "--help"])
        #expect(help.output.contains("--sample-size") && help.output.contains("default: 100"))
        let delegateHelp = try runPimesh(["delegate", "--help"]).output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(delegateHelp.contains("(default: 300.0)"))
    }

    /// SIGHUP (systemd's ExecReload, an operator's `kill -HUP`) never ends `pimesh run`, even
    /// before the lead is up: here while it hashes the release `current` names, which takes
    /// seconds for a large binary on an SD card. A 1 GiB sparse file that cannot match its
    /// directory's name keeps it hashing long enough to be seen; then it is refused and the
    /// packaged binary leads.
    @Test func aHangupWhileRunHashesAReleaseDoesNotEndIt() throws {
        let release = String(repeating: "ab", count: 32)
        let releaseDir = dataDir + "/releases/" + release
        try FileManager.default.createDirectory(atPath: releaseDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(dataDir + "/releases", 0o700)
        let binary = releaseDir + "/pimesh"
        #expect(FileManager.default.createFile(atPath: binary, contents: nil, attributes: [.posixPermissions: 0o700]))
        #expect(truncate(binary, 1 << 30) == 0)
        #expect(symlink("releases/" + release, dataDir + "/current") == 0)
        try "{}".write(toFile: dataDir + "/pimesh.json", atomically: true, encoding: .utf8)

        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", dataDir + "/pimesh.json"])
        defer { _ = lead.terminate() }
        let pid = lead.process.processIdentifier
        func hashing() -> Bool {
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            return descriptors.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\($0)"))?.hasSuffix("/releases/\(release)/pimesh") == true }
        }
        #expect(eventually(timeout: 30, hashing), "the launcher never held the release open: \(lead.log)")
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let ignored = status.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }.flatMap { UInt64($0.dropFirst("SigIgn:".count).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
        #expect(ignored & (1 << (UInt64(SIGHUP) - 1)) != 0, "SIGHUP is not ignored while the release is hashed: \(status)")
        #expect(kill(pid, SIGHUP) == 0)

        _ = try lead.waitReady(timeout: 60)
        #expect(lead.log.contains("not running release \(release): its binary \(binary) is no longer the one staged under that SHA-256"), "\(lead.log)")

        // Ready means a SIGHUP reloads: trapped before READY, one sent at once is not lost.
        try agentManifest("early")
        #expect(kill(pid, SIGHUP) == 0)
        #expect(eventually(timeout: 10) { alive(lead, "early") }, "\(lead.log)")
    }
}

/// Text a pipe's handler appends to while a test reads it.
final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""

    func append(_ more: String) {
        lock.lock()
        buffer += more
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return buffer
    }
}
