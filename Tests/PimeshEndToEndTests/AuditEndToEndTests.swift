import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// The audit log against real leads (docs/audit.md): operator actions with intent and outcome
/// rows, `pimesh audit verify` against edits made with the sqlite3 CLI, the Python verifier of
/// the docs, kill -9 in a loop, and heads kept by a coordinator.
@Suite(.serialized) struct AuditEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func manifest(_ name: String, _ json: String) throws {
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try json.write(toFile: dataDir + "/agents.d/\(name).json", atomically: true, encoding: .utf8)
    }

    func startLead(config: String = "{}") throws -> LeadProcess {
        let path = dataDir + "/pimesh.json"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", path])
        _ = try lead.waitReady(timeout: 30)
        return lead
    }

    struct Row {
        var seq: Int
        var actor: String
        var kind: String
        var subject: String
        var body: String

        var fields: [String: String] {
            Dictionary(body.split(separator: " ").compactMap { pair in
                pair.firstIndex(of: "=").map { (String(pair[..<$0]), String(pair[pair.index(after: $0)...])) }
            }, uniquingKeysWith: { first, _ in first })
        }
    }

    func rows(_ arguments: [String] = []) throws -> [Row] {
        let listed = try runPimesh(["audit", "tail", "--data-dir", dataDir, "--json", "--lines", "5000"] + arguments)
        #expect(listed.status == 0, "\(listed.output)")
        return listed.output.split(separator: "\n").map { line in
            let object = try! JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            return Row(
                seq: object["seq"] as! Int, actor: object["actor"] as! String, kind: object["kind"] as! String,
                subject: object["subject"] as! String, body: object["body"] as! String)
        }
    }

    func sqlite(_ database: String, _ sql: String) throws -> String {
        try runProcess("/usr/bin/sqlite3", [database, sql]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func verify(_ extra: [String] = []) throws -> (status: Int32, output: String) {
        try runPimesh(["audit", "verify", "--data-dir", dataDir] + extra)
    }

    /// The Python verifier exactly as docs/audit.md shows it.
    static func pythonSnippet() throws -> String {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/audit.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let start = try #require(text.range(of: "```python\n"))
        let end = try #require(text.range(of: "\n```", range: start.upperBound..<text.endIndex))
        return String(text[start.upperBound..<end.lowerBound])
    }

    func python(_ database: String) throws -> (status: Int32, output: String) {
        let script = dataDir + "/verify.py"
        try Self.pythonSnippet().write(toFile: script, atomically: true, encoding: .utf8)
        return try runProcess("/usr/bin/python3", [script, database])
    }

    @Test func operatorActionsLeaveIntentAndOutcomeRowsAndVerifyNamesARowEditedWithSqlite3() throws {
        try manifest("steady", #"{"name": "steady", "command": "/bin/sleep", "args": ["1000"]}"#)
        let lead = try startLead()
        let client = try lead.client()
        // Restart is refused until the supervisor has started the agent.
        #expect(eventually(timeout: 20) { (try? client.post("/v1/agents/steady/restart", json: Array("{}".utf8))) != nil })
        _ = try client.post("/v1/tokens/join/rotate", json: Array("{}".utf8))
        _ = try client.post("/v1/reload", json: Array("{}".utf8))
        // A refused action is recorded too, with what was wrong.
        #expect(throws: (any Error).self) { _ = try client.post("/v1/agents/steady/release", json: Array("{}".utf8)) }

        var all = try rows()
        #expect(all.first?.kind == "genesis")
        #expect(all.first?.fields["node_key"]?.count == 64)
        #expect(all.contains { $0.kind == "lead_started" && $0.fields["version"] != nil && $0.fields["config_sha256"]?.count == 64 })
        #expect(all.contains { $0.kind == "manifest" && $0.subject == "steady" && $0.fields["change"] == "loaded" && $0.fields["launch_sha256"]?.count == 64 })
        for kind in ["agent_restart", "token_rotate", "reload"] {
            let intent = try #require(all.first { $0.kind == kind && $0.fields["phase"] == "intent" }, "\(kind)")
            #expect(intent.actor.hasPrefix("operator ("), "\(intent.actor)")
            let outcome = try #require(all.first { $0.kind == kind && $0.fields["phase"] == "outcome" })
            #expect(outcome.fields["intent"] == String(intent.seq))
            #expect(outcome.fields["result"] == "ok")
            #expect(outcome.seq > intent.seq)
        }
        let refused = try #require(all.first { $0.kind == "release" && $0.fields["phase"] == "outcome" })
        #expect(refused.fields["result"] == "refused")
        // Automatic actions: the restart the operator asked for is carried out by the lead.
        #expect(eventually(timeout: 20) { try rows(["--kind", "restarted"]).contains { $0.subject == "steady" && $0.actor == "lead" } })
        // Filters and the human table.
        #expect(try rows(["--kind", "reload"]).allSatisfy { $0.kind == "reload" })
        // -n as tail(1) and journalctl have it, -l and --lines as before.
        for count in [["--lines", "5"], ["-n", "5"], ["-l", "5"]] {
            let table = try runPimesh(["audit", "tail", "--data-dir", dataDir] + count)
            #expect(table.output.hasPrefix("SEQ"), "\(count): \(table.output)")
            #expect(table.output.split(separator: "\n").count == 6, "\(count): \(table.output)")
        }
        #expect(try lead.statusJSON()["audit"] != nil)
        // GET /v1/audit's bounds (docs/api.md): a 400 that names the parameter.
        let oversized = [("limit=5001", "limit"), ("tail=0", "tail"), ("after=-1", "after"), ("kind=" + String(repeating: "k", count: 257), "kind")]
        for (query, name) in oversized {
            do {
                _ = try client.get("/v1/audit?" + query)
                Issue.record("\(query) was accepted")
            } catch let error as LeadClient.APIError {
                #expect(error.status == 400)
                #expect(error.message.contains(name), "\(error.message)")
            }
        }
        let page = try #require(try JSONSerialization.jsonObject(with: Data(try client.get("/v1/audit?limit=2"))) as? [String: Any])
        #expect((page["records"] as? [Any])?.count == 2)
        #expect(page["more"] as? Bool == true)
        #expect(lead.terminate() == 0)

        all = try rows(["--kind", "lead_stopped"])
        #expect(all.count == 1)
        let good = try verify()
        #expect(good.status == 0, "\(good.output)")
        #expect(good.output.hasPrefix("ok: "))
        let database = dataDir + "/pimesh.db"
        let pythonGood = try python(database)
        #expect(pythonGood.status == 0 && pythonGood.output == "ok\n", "\(pythonGood.output)")

        // The triggers refuse an edit; verification does not rely on them.
        let refusedEdit = try runProcess("/usr/bin/sqlite3", [database, "UPDATE audit_log SET body = 'phase=intent' WHERE seq = 3"])
        #expect(refusedEdit.status != 0)
        #expect(refusedEdit.output.contains("append-only"))
        let edited = try runProcess(
            "/usr/bin/sqlite3",
            [database, "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; UPDATE audit_log SET actor = 'nobody' WHERE seq = 3"])
        #expect(edited.status == 0, "\(edited.output)")
        let bad = try verify()
        #expect(bad.status == 1)
        #expect(bad.output.contains("FAILED"))
        #expect(bad.output.contains("  row 3: its content does not hash to its sha256"), "\(bad.output)")
        let pythonBad = try python(database)
        #expect(pythonBad.status == 1 && pythonBad.output == "first bad row: 3\n", "\(pythonBad.output)")
        let json = try verify(["--json"])
        let report = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as! [String: Any]
        #expect(report["first_bad_seq"] as? Int == 3)
        #expect(report["ok"] as? Bool == false)
        // A deleted row is named too.
        _ = try runProcess("/usr/bin/sqlite3", [database, "DELETE FROM audit_log WHERE seq = 6"])
        #expect(try verify().output.contains("  row 6: missing"))
    }

    /// A NUL inside a subject or a body is text: stored and read back whole, the row hashes as
    /// it was chained (SQLite bound and read text up to its first NUL: a false tamper alarm).
    @Test func textWithANulVerifiesAndReadsBackWhole() throws {
        let lead = try startLead()
        defer { _ = lead.terminate() }
        let client = try lead.client()
        let answer = try client.http.request(
            "POST", "/v1/drills/hang", headers: [("Authorization", "Bearer " + LeadDiscovery.token(dataDir: dataDir))],
            body: Array(#"{"confirm": true, "agent": "zz\u0000evil", "timeout_s": 1}"#.utf8))
        #expect(answer.status == 409, "\(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        #expect(eventually(timeout: 10) { try rows().contains { $0.subject == "zz\u{0}evil" } }, "\((try? rows().suffix(4).map(\.subject)) ?? [])")
        let verified = try verify()
        #expect(verified.status == 0, "\(verified.output)")
    }

    /// kill -9 of the lead at random moments while it restarts a crashing agent and an operator
    /// restarts another: after every kill the chain verifies, and every action the API
    /// confirmed has its intent and its outcome row.
    @Test func theChainSurvivesKill9InALoop() throws {
        try manifest("steady", #"{"name": "steady", "command": "/bin/sleep", "args": ["1000"]}"#)
        try manifest(
            "crashy",
            #"{"name": "crashy", "command": "/bin/sh", "args": ["-c", "sleep 0.1; exit 3"], "restart": {"initial_backoff_ms": 50, "max_backoff_ms": 200, "stable_after_s": 1}}"#)
        var confirmed: [String] = []
        for round in 0..<20 {
            let lead = try startLead()
            let client = try lead.client()
            let started = Date()
            let killAfter = Double.random(in: 0.05...0.6)
            while Date().timeIntervalSince(started) < killAfter {
                if let answer = try? client.post("/v1/agents/steady/restart", json: Array("{}".utf8)), !answer.isEmpty {
                    confirmed.append("round \(round)")
                }
            }
            lead.kill9()
            let checked = try verify()
            #expect(checked.status == 0, "round \(round): \(checked.output)")
        }
        let lead = try startLead()
        defer { lead.stopOrphanedAgents() }
        let all = try rows(["--kind", "agent_restart"])
        #expect(lead.terminate() == 0)
        // Each lead records an agent's pid before the agent runs, so the last lead knew every
        // process the killed ones left, and stopped them (once: 11 unknown `steady` were left).
        #expect(eventually(timeout: 20) { lead.agentsStillRunning().isEmpty }, "left running: \(lead.agentsStillRunning())")
        let intents = Set(all.filter { $0.fields["phase"] == "intent" }.map(\.seq))
        let outcomes = all.filter { $0.fields["phase"] == "outcome" }
        #expect(!confirmed.isEmpty)
        #expect(outcomes.filter { $0.fields["result"] == "ok" }.count >= confirmed.count)
        #expect(intents.count >= outcomes.count)
        for outcome in outcomes { #expect(intents.contains(Int(outcome.fields["intent"] ?? "") ?? -1), "outcome \(outcome.seq)") }
        #expect(try verify().status == 0)
        #expect(try rows(["--kind", "lead_started"]).count == 21)
    }

    /// Heads go upstream in snapshot manifests; the coordinator keeps them; pruning goes only
    /// as far as upstream holds; a tail cut after an upstream head is found with --heads-from.
    @Test func theCoordinatorKeepsHeadsAndACutTailIsFoundAgainstThem() throws {
        let coordinatorDir = dataDir + "/coordinator"
        let coordinator = try UploadEndToEndTests.Background(
            LeadProcess.coordinatorBinary, ["serve", "--dir", coordinatorDir, "--port", "0", "--log-level", "warning"],
            log: dataDir + "/coordinator.log")
        defer { coordinator.stop() }
        var port = 0
        #expect(eventually(timeout: 10) {
            let data = try Data(contentsOf: URL(fileURLWithPath: coordinatorDir + "/coordinator.json"))
            port = (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["port"] as? Int ?? 0
            return port > 0
        })
        let upload = #""upload": {"target": "coordinator", "url": "http://127.0.0.1:\#(port)", "retry_initial_ms": 100}"#
        var lead = try startLead(config: #"{"snapshots": {"interval_s": 0}, "audit": {"head_every_rows": 4}, \#(upload)}"#)
        let key = try #require(try rows(["--kind", "genesis"]).first?.fields["node_key"])
        #expect(try runCoordinator(["enroll", "--dir", coordinatorDir, key]).status == 0)
        let client = try lead.client()
        for _ in 0..<3 { _ = try client.post("/v1/tokens/join/rotate", json: Array("{}".utf8)) }
        _ = try client.post("/v1/snapshots", json: Array("{}".utf8))
        // The coordinator has the head the snapshot carried.
        var upstreamHeads = 0
        #expect(eventually(timeout: 30) {
            let report = try JSONSerialization.jsonObject(with: Data(try verify(["--heads-from", coordinatorDir, "--json"]).output.utf8)) as? [String: Any]
            upstreamHeads = report?["upstream_heads"] as? Int ?? 0
            return upstreamHeads >= 1
        })
        #expect(lead.terminate() == 0)

        // Restarted with retain_days 0: rows that upstream holds are pruned at once, through
        // the newest head it holds, and the chain still verifies from the anchor.
        lead = try startLead(config: #"{"snapshots": {"interval_s": 0}, "audit": {"head_every_rows": 4, "retain_days": 0}, \#(upload)}"#)
        #expect(eventually(timeout: 20) { try rows(["--kind", "pruned_through"]).count == 1 })
        let audit = try #require(try lead.statusJSON()["audit"] as? [String: Any])
        // More actions and a second snapshot: a head beyond the pruned rows goes upstream.
        let second = try lead.client()
        for _ in 0..<3 { _ = try second.post("/v1/tokens/join/rotate", json: Array("{}".utf8)) }
        _ = try second.post("/v1/snapshots", json: Array("{}".utf8))
        #expect(eventually(timeout: 30) {
            let report = try JSONSerialization.jsonObject(with: Data(try verify(["--heads-from", coordinatorDir, "--json"]).output.utf8)) as? [String: Any]
            return report?["upstream_heads"] as? Int ?? 0 >= 2
        })
        #expect(lead.terminate() == 0)
        let prunedThrough = try #require(audit["pruned_through_seq"] as? Int)
        #expect(prunedThrough >= 4)
        #expect(audit["upstream_seq"] as? Int ?? 0 >= prunedThrough)
        #expect(try rows().first?.seq == prunedThrough + 1)
        let afterPrune = try verify(["--heads-from", coordinatorDir])
        #expect(afterPrune.status == 0, "\(afterPrune.output)")
        #expect(afterPrune.output.contains("pruned through \(prunedThrough)"))

        // Cut the tail, the node's own heads after the anchor with it: only the upstream heads can
        // tell. (Deleting the anchor's head too is caught on the node: an unsigned anchor.)
        let newestUpstream = try #require(
            (try JSONSerialization.jsonObject(with: Data(try verify(["--heads-from", coordinatorDir, "--json"]).output.utf8)) as? [String: Any])?[
                "last_seq"] as? Int)
        let cut = try runProcess(
            "/usr/bin/sqlite3",
            [
                dataDir + "/pimesh.db",
                "DROP TRIGGER audit_log_no_delete; DROP TRIGGER audit_heads_no_delete; DELETE FROM audit_heads WHERE seq > \(prunedThrough); DELETE FROM audit_log WHERE seq > \(prunedThrough + 1)",
            ])
        #expect(cut.status == 0, "\(cut.output)")
        #expect(try verify().status == 0)
        let caught = try verify(["--heads-from", coordinatorDir])
        #expect(caught.status == 1)
        #expect(caught.output.contains("the tail was cut"), "\(caught.output)")
        #expect(newestUpstream > prunedThrough + 1)
    }

    /// A node with no upstream would keep every row for ever on its SD card: it prunes rows
    /// past `retain_days` through its own newest signed head, and the chain verifies from that
    /// anchor. A node whose upstream has confirmed nothing yet keeps them.
    @Test func aNodeWithoutUpstreamPrunesByAgeThroughItsOwnHeads() throws {
        var lead = try startLead(config: #"{"snapshots": {"interval_s": 0}, "audit": {"head_every_rows": 4}}"#)
        let client = try lead.client()
        for _ in 0..<6 { _ = try client.post("/v1/tokens/join/rotate", json: Array("{}".utf8)) }
        #expect(eventually(timeout: 20) { (try lead.statusJSON()["audit"] as? [String: Any])?["newest_head_seq"] as? Int ?? 0 >= 8 })
        #expect(lead.terminate() == 0)

        // Upstream configured but never reached: nothing is pruned, and status says why.
        let unreachable = #""upload": {"target": "coordinator", "url": "http://127.0.0.1:\#(freeLoopbackPort())"}"#
        lead = try startLead(config: #"{"snapshots": {"interval_s": 0}, "audit": {"head_every_rows": 4, "retain_days": 0}, \#(unreachable)}"#)
        // The check at start has run once it has measured the log.
        #expect(eventually(timeout: 20) { (try lead.statusJSON()["audit"] as? [String: Any])?["bytes_at_last_check"] as? Int ?? 0 > 0 })
        #expect(try runPimesh(["status", "--data-dir", dataDir]).output.contains("not pruning: no snapshot reached upstream yet"))
        #expect(try rows(["--kind", "pruned_through"]).isEmpty)
        #expect(lead.terminate() == 0)

        lead = try startLead(config: #"{"snapshots": {"interval_s": 0}, "audit": {"head_every_rows": 4, "retain_days": 0}}"#)
        defer { _ = lead.terminate() }
        #expect(eventually(timeout: 20) { try rows(["--kind", "pruned_through"]).count == 1 })
        let pruned = try #require(try rows(["--kind", "pruned_through"]).first)
        #expect(pruned.fields["upstream"] == "none", "\(pruned.body)")
        let prunedThrough = try #require(Int(pruned.fields["seq"] ?? ""))
        #expect(prunedThrough >= 8)
        let audit = try #require(try lead.statusJSON()["audit"] as? [String: Any])
        #expect(audit["pruned_through_seq"] as? Int == prunedThrough)
        #expect(audit["pruned_by_age_alone"] as? Bool == true)
        #expect(try runPimesh(["status", "--data-dir", dataDir]).output.contains("pruned through \(prunedThrough) (no upstream: by age alone)"))
        #expect(try rows().first?.seq == prunedThrough + 1)
        let verified = try verify()
        #expect(verified.status == 0, "\(verified.output)")
        #expect(verified.output.contains("pruned through \(prunedThrough)"), "\(verified.output)")
        let python = try python(dataDir + "/pimesh.db")
        #expect(python.status == 0, "\(python.output)")
    }

    /// A restore runs while no lead does: `snapshot restore` marks the database, and the next
    /// lead chains one `snapshot_restored` row naming who restored which snapshot.
    @Test func aRestoredSnapshotIsRecordedByTheNextLead() throws {
        var lead = try startLead(config: #"{"snapshots": {"interval_s": 0}}"#)
        let client = try lead.client()
        _ = try client.post("/v1/snapshots", json: Array("{}".utf8))
        let seqAtSnapshot = try #require(try rows().last?.seq)
        for _ in 0..<3 { _ = try client.post("/v1/tokens/join/rotate", json: Array("{}".utf8)) }
        #expect(lead.terminate() == 0)
        let spool = dataDir + "/spool"
        let manifest = try #require(try FileManager.default.contentsOfDirectory(atPath: spool).first { $0.hasSuffix(".json") })
        let restored = dataDir + "/restored"
        let restore = try runPimesh(["snapshot", "restore", spool + "/" + manifest, "--to", restored, "--data-dir", dataDir])
        #expect(restore.status == 0, "\(restore.output)")
        #expect(restore.output.contains("records the restore in its audit log"))
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dataDir + "/pimesh.db" + suffix) }
        try FileManager.default.moveItem(atPath: restored + "/pimesh.db", toPath: dataDir + "/pimesh.db")

        lead = try startLead()
        #expect(eventually(timeout: 20) { try rows(["--kind", "snapshot_restored"]).count == 1 })
        #expect(lead.terminate() == 0)
        lead = try startLead()
        #expect(lead.terminate() == 0)
        let rowsAfter = try rows()
        let restoredRows = rowsAfter.filter { $0.kind == "snapshot_restored" }
        #expect(restoredRows.count == 1, "one row, however many leads start on the database")
        let row = try #require(restoredRows.first)
        #expect(row.actor == "operator (uid \(getuid()))")
        #expect(row.fields["snapshot_sequence"] == row.subject)
        #expect(Int(row.fields["audit_head_seq"] ?? "") ?? 0 > 0)
        // The chain goes on from the snapshot: the rotations after it are gone.
        #expect(rowsAfter.filter { $0.kind == "token_rotate" }.isEmpty)
        #expect(row.seq > seqAtSnapshot - 5)
        let mark = try runProcess("/usr/bin/sqlite3", [dataDir + "/pimesh.db", "SELECT count(*) FROM meta WHERE key = 'audit_pending_restore'"])
        #expect(mark.output == "0\n")
        let checked = try verify()
        #expect(checked.status == 0, "\(checked.output)")
        #expect(checked.output.contains("note: row \(row.seq): operator (uid \(getuid())) restored snapshot \(row.subject)"), "\(checked.output)")
    }

    /// A release that migrated the database is rolled back (docs/pi.md, "Update and rollback"):
    /// the older lead cannot read the newer schema, so it restores the snapshot the updater took
    /// before the switch, keeps the migrated database aside, and says so in an event and in the
    /// audit log. A mark it cannot follow stops it with the database untouched; one it no longer
    /// needs is dropped.
    @Test func aLeadRolledBackAcrossAMigrationRestoresTheSnapshotTakenBeforeIt() throws {
        var lead = try startLead(config: #"{"snapshots": {"interval_s": 0}}"#)
        let client = try lead.client()
        for index in 0..<3 { _ = try client.register(.init(name: "before-\(index)", capabilities: ["work"])) }
        let taken = try APICoding.decode(SnapshotManifestView.self, from: try client.post("/v1/snapshots", json: Array("{}".utf8)))
        // What the release that migrated wrote after the switch.
        _ = try client.register(.init(name: "after-switch", capabilities: ["work"]))
        #expect(lead.terminate() == 0)
        let database = dataDir + "/pimesh.db"
        let schema = try #require(Int(try sqlite(database, "PRAGMA user_version")))
        _ = try sqlite(database, "PRAGMA user_version = \(schema + 1)")
        let release = String(repeating: "ab", count: 32)
        let markPath = dataDir + "/restore-after-rollback"
        func mark(_ snapshot: String) throws {
            try "marked_at_ms=1733400000000 release=\(release) snapshot=\(snapshot)\n".write(toFile: markPath, atomically: true, encoding: .utf8)
        }
        func startRefused(marked: Bool = true, agents: String = "4") throws -> String {
            let run = try runPimesh(["run", "--data-dir", dataDir, "--api-port", "0", "--heartbeat-port", "0"])
            #expect(run.status != 0, "\(run.output)")
            #expect(try sqlite(database, "PRAGMA user_version") == "\(schema + 1)", "the migrated database stays as it was")
            #expect(try sqlite(database, "SELECT count(*) FROM agents") == agents)
            #expect(FileManager.default.fileExists(atPath: markPath) == marked, "kept for the next start")
            return run.output
        }

        // Without a mark: refused, as before.
        #expect(try startRefused(marked: false).contains("newer than this pimesh knows"))
        try mark("../node-key")
        let outside = try startRefused()
        #expect(outside.contains(markPath) && outside.contains("key `snapshot`"), "\(outside)")
        try mark("snapshot-0000000099.db.lz4")
        let missing = try startRefused()
        #expect(missing.contains("snapshot-0000000099.db.lz4") && missing.contains("could not be restored"), "\(missing)")
        // Another process with the migrated database open would use the WAL by name later, the
        // restored database's by then: refused, also when it has not read yet (no lock, no WAL).
        try mark(taken.file)
        for query in ["", "SELECT count(*) FROM agents;\n"] {
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
            holder.arguments = [database]
            let input = Pipe()
            holder.standardInput = input
            holder.standardOutput = FileHandle.nullDevice
            try holder.run()
            input.fileHandleForWriting.write(Data(query.utf8))
            let descriptors = "/proc/\(holder.processIdentifier)/fd"
            #expect(eventually(timeout: 20) {
                try FileManager.default.contentsOfDirectory(atPath: descriptors).contains {
                    (try? FileManager.default.destinationOfSymbolicLink(atPath: descriptors + "/" + $0)) == database
                }
            })
            let held = try startRefused()
            #expect(held.contains("another process has \(database) open"), "\(held)")
            #expect(!FileManager.default.fileExists(atPath: dataDir + "/.rollback-restore"))
            input.fileHandleForWriting.closeFile()
            holder.waitUntilExit()
        }

        // Earlier rollbacks' set-aside databases: only the newest stays beside this one, which is
        // kept even though a name from a clock that ran ahead sorts after it.
        let asideDir = dataDir + "/rolled-back"
        try FileManager.default.createDirectory(atPath: asideDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let earlier = ["pimesh-001733000000000-cdcdcdcdcdcd.db", "pimesh-001733000000000-cdcdcdcdcdcd.db-wal", "pimesh-001733100000000-cdcdcdcdcdcd.db",
                       "pimesh-001799000000000-cdcdcdcdcdcd.db", "pimesh-001799000000000-cdcdcdcdcdcd.db-shm", "notes.txt"]
        for name in earlier { #expect(FileManager.default.createFile(atPath: asideDir + "/" + name, contents: Data("x".utf8), attributes: [.posixPermissions: 0o600])) }

        let status = try runPimesh(["update", "status", "--json", "--data-dir", dataDir])
        #expect(status.status == 0 && status.output.contains(#""restore_at_next_start":"\#(taken.file) at the next start"#), "\(status.output)")
        lead = try startLead(config: #"{"snapshots": {"interval_s": 0}}"#)
        #expect(try lead.agents().map(\.name).sorted() == ["before-0", "before-1", "before-2"])
        #expect(!FileManager.default.fileExists(atPath: markPath))
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/.rollback-restore"))
        let events = try runPimesh(["events", "--json", "--data-dir", dataDir])
        #expect(events.output.contains(#""kind":"database_restored""#) && events.output.contains("is kept as"), "\(events.output)")
        // The migrated database, with the row written after the switch, is kept aside, private.
        let aside = "pimesh-001733400000000-abababababab.db"
        let keptAside = try FileManager.default.contentsOfDirectory(atPath: asideDir).filter { !$0.hasPrefix(aside) }.sorted()
        #expect(keptAside == ["notes.txt", "pimesh-001799000000000-cdcdcdcdcdcd.db", "pimesh-001799000000000-cdcdcdcdcdcd.db-shm"], "\(keptAside)")
        #expect(try sqlite(asideDir + "/" + aside, "SELECT name FROM agents WHERE name = 'after-switch'") == "after-switch")
        #expect(try sqlite(asideDir + "/" + aside, "PRAGMA user_version") == "\(schema + 1)")
        #expect((try FileManager.default.attributesOfItem(atPath: asideDir)[.posixPermissions] as? Int) == 0o700)
        #expect(eventually(timeout: 20) { try rows(["--kind", "snapshot_restored"]).count == 1 })
        let row = try #require(try rows(["--kind", "snapshot_restored"]).first)
        #expect(row.actor == "lead" && row.fields["rollback_of"] == release && row.subject == "\(taken.sequence)", "\(row)")
        #expect(lead.terminate() == 0)
        let checked = try verify()
        #expect(checked.status == 0 && checked.output.contains("after release \(release) was rolled back"), "\(checked.output)")

        // A start cut short after the migrated database was set aside finishes the move.
        _ = try sqlite(database, "PRAGMA user_version = \(schema + 1)")
        let restored = try runPimesh(["snapshot", "restore", dataDir + "/spool/" + taken.file, "--to", dataDir + "/.rollback-restore", "--data-dir", dataDir])
        #expect(restored.status == 0, "\(restored.output)")
        try FileManager.default.moveItem(atPath: dataDir + "/.rollback-restore/pimesh.db", toPath: dataDir + "/.rollback-restore/pimesh.db.ready")
        for name in try FileManager.default.contentsOfDirectory(atPath: asideDir) { try FileManager.default.removeItem(atPath: asideDir + "/" + name) }
        try FileManager.default.moveItem(atPath: database, toPath: asideDir + "/pimesh-001733400000000-abababababab.db")
        try mark(taken.file)
        lead = try startLead()
        #expect(try lead.agents().count == 3)
        #expect(!FileManager.default.fileExists(atPath: markPath))
        #expect(lead.terminate() == 0)

        // Cut short after the restored database was moved in, before the mark went: no lead has
        // run on it yet (its restore mark is there), and the next start says what was done.
        let again = dataDir + "/again"
        #expect(try runPimesh(["snapshot", "restore", dataDir + "/spool/" + taken.file, "--to", again, "--data-dir", dataDir]).status == 0)
        _ = try sqlite(again + "/pimesh.db", "UPDATE meta SET value = value || ' rollback_of=\(release)' WHERE key = 'audit_pending_restore'")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        try FileManager.default.moveItem(atPath: again + "/pimesh.db", toPath: database)
        try mark(taken.file)
        lead = try startLead()
        #expect(!FileManager.default.fileExists(atPath: markPath))
        let finished = try runPimesh(["events", "--data-dir", dataDir])
        #expect(finished.output.contains("was finished by a start cut short"), "\(finished.output)")
        #expect(lead.terminate() == 0)
        // The same mark on a database a lead has run on since says nothing: it is just dropped.
        try mark(taken.file)
        lead = try startLead()
        #expect(!FileManager.default.fileExists(atPath: markPath))
        #expect(try runPimesh(["events", "--data-dir", dataDir]).output.contains("database_restored") == false)
        #expect(lead.terminate() == 0)

        // A mark the database no longer needs (it is not newer) is dropped, however bad it is,
        // and with no update pending no snapshot stays pinned.
        try "snapshot=../../etc/shadow\n".write(toFile: markPath, atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: dataDir + "/spool/" + taken.file.replacing(".db.lz4", with: ".pinned"), contents: Data())
        lead = try startLead()
        #expect(!FileManager.default.fileExists(atPath: markPath))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dataDir + "/spool").filter { $0.hasSuffix(".pinned") }.isEmpty)
        #expect(try lead.agents().count == 3)
        #expect(lead.terminate() == 0)

        // Values that are not what a rollback writes are refused by name (they go into a file
        // name, the log and `update status`).
        _ = try sqlite(database, "PRAGMA user_version = \(schema + 1)")
        for (line, key) in [
            ("marked_at_ms=1 release=..%2F..%2Ftmp snapshot=\(taken.file)", "release"),
            ("marked_at_ms=x release=\(release) snapshot=\(taken.file)", "marked_at_ms"),
            ("marked_at_ms=1 release=\(release) snapshot=snapshot-1%1B.db.lz4", "snapshot"),
        ] {
            try (line + "\n").write(toFile: markPath, atomically: true, encoding: .utf8)
            let refused = try startRefused(agents: "3")
            #expect(refused.contains("key `\(key)`"), "\(refused)")
            #expect(!refused.contains("\u{1B}"))
        }
        // A mark that names what an earlier rollback set aside never overwrites it.
        try mark(taken.file)
        let kept = try startRefused(agents: "3")
        #expect(kept.contains("pimesh-001733400000000-abababababab.db exists already"), "\(kept)")
    }
}
