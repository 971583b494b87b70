import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// Snapshots taken by a real lead and by `pimesh snapshot`, checked with the system's lz4 and
/// sqlite3, and interrupted with kill -9.
@Suite(.serialized) struct SnapshotEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func sqlite(_ database: String, _ sql: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = [database, sql]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func spoolFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/spool")) ?? []).sorted()
    }

    @Test func theLeadSnapshotsOnDemandAndTheRestoreHasTheSameRows() throws {
        let lead = try LeadProcess(dataDir: dataDir)
        _ = try lead.waitReady()
        defer { _ = lead.terminate() }
        let client = try lead.client()
        for index in 0..<5 { _ = try client.register(.init(name: "snap-\(index)", capabilities: ["work"])) }
        for index in 0..<20 { _ = try client.submit(.init(capability: "nobody", payload: "{\"n\": \(index)}")) }
        #expect(FileManager.default.fileExists(atPath: dataDir + "/node-key"), "made at first start")

        let created = try runPimesh(["snapshot", "create", "--data-dir", dataDir, "--json"])
        #expect(created.status == 0, "\(created.output)")
        let manifest = try APICoding.decode(SnapshotManifestView.self, from: Array(created.output.utf8))
        #expect(manifest.sequence == 1)
        let file = dataDir + "/spool/" + manifest.file
        let verified = try runPimesh(["snapshot", "verify", file, "--data-dir", dataDir])
        #expect(verified.status == 0)
        #expect(verified.output.hasPrefix("ok: snapshot 1 of \(manifest.nodeId)"))
        let restored = try runPimesh(["snapshot", "restore", file, "--to", dataDir + "/restored", "--data-dir", dataDir])
        #expect(restored.status == 0, "\(restored.output)")
        for table in ["agents", "tasks"] {
            #expect(try sqlite(dataDir + "/restored/pimesh.db", "SELECT count(*) FROM \(table)") == sqlite(dataDir + "/pimesh.db", "SELECT count(*) FROM \(table)"))
        }
        #expect(try sqlite(dataDir + "/restored/pimesh.db", "SELECT count(*) FROM agents") == "5")
        let listed = try runPimesh(["snapshot", "list", "--data-dir", dataDir])
        #expect(listed.output.contains("1 snapshot in"), "\(listed.output)")
        // A directory that is not a coordinator's is named as such, and gains no empty index.
        let notCoordinator = try runPimesh(["snapshot", "verify", file, "--data-dir", dataDir, "--coordinator-dir", dataDir + "/restored"])
        #expect(notCoordinator.status != 0 && notCoordinator.output.contains("holds no coordinator.db"), "\(notCoordinator.output)")
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/restored/coordinator.db"))

        // A forged snapshot: another node's key signed a database with an extra agent. Restore
        // and verify refuse it, naming the signer; trusted by hand, the same file restores.
        let forger = dataDir + "/forger"
        try FileManager.default.createDirectory(atPath: forger, withIntermediateDirectories: true)
        let forgerLead = try LeadProcess(dataDir: forger)
        _ = try forgerLead.waitReady()
        _ = try forgerLead.client().register(.init(name: "impostor"))
        #expect(forgerLead.terminate() == 0)
        let forged = try runPimesh(["snapshot", "create", "--data-dir", forger, "--json"])
        let forgedManifest = try APICoding.decode(SnapshotManifestView.self, from: Array(forged.output.utf8))
        let forgedFile = forger + "/spool/" + forgedManifest.file
        for command in [["verify", forgedFile], ["restore", forgedFile, "--to", dataDir + "/forged"]] {
            let refused = try runPimesh(["snapshot"] + command + ["--data-dir", dataDir])
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains("not trusted: node \(forgedManifest.nodeId)"), "\(refused.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/forged/pimesh.db"))
        let forgerKey = try String(contentsOfFile: forger + "/spool/" + forgedManifest.file.replacingOccurrences(of: ".db.lz4", with: ".json"), encoding: .utf8)
        let publicKey = try #require(forgerKey.split(separator: "\"").drop { $0 != "public_key" }.dropFirst(2).first)
        let trusted = try runPimesh(["snapshot", "restore", forgedFile, "--to", dataDir + "/forged", "--data-dir", dataDir, "--public-key", String(publicKey)])
        #expect(trusted.status == 0, "\(trusted.output)")
    }

    @Test func killedMidSnapshotTheSpoolHoldsOnlyWholeSnapshots() throws {
        // 80,000 finished tasks make a database worth compressing; retention must keep them all.
        let configPath = dataDir + "/pimesh.json"
        try #"{"tasks": {"retain_finished_count": 1000000, "retain_finished_s": 315360000, "max_stored_mb": 1024}}"#.write(toFile: configPath, atomically: true, encoding: .utf8)
        let keepEveryTask = ["--config", configPath]
        // A lead database grown to about 30 MB, so that a snapshot takes long enough to interrupt.
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: keepEveryTask)
        _ = try lead.waitReady()
        #expect(lead.terminate() == 0)
        _ = try sqlite(
            dataDir + "/pimesh.db",
            """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80000)
            INSERT INTO tasks (id, idempotency_key, capability, payload, weight, state, attempts, submitted_at_ms, priority)
            SELECT 'task-' || i, 'key-' || i, 'infer', hex(randomblob(150)), 1, 'succeeded', 1, 1700000000000 + i, 2 FROM n;
            """)
        for delayMs in [20, 60, 120, 250] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: LeadProcess.binary)
            process.arguments = ["snapshot", "create", "--data-dir", dataDir]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(useconds_t(delayMs * 1000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // Whatever the instant: every snapshot the spool lists is whole and verifies.
            for name in spoolFiles() where name.hasSuffix(".json") && name.hasPrefix("snapshot-") {
                #expect(try runPimesh(["snapshot", "verify", dataDir + "/spool/" + name, "--data-dir", dataDir]).status == 0, "after a kill at \(delayMs) ms")
            }
        }
        // A lead killed in the middle of its own snapshot: the restart clears what was left.
        let second = try LeadProcess(dataDir: dataDir, extraArguments: keepEveryTask)
        _ = try second.waitReady()
        let client = try second.client()
        Thread.detachNewThread { _ = try? client.post("/v1/snapshots", json: Array("{}".utf8)) }
        usleep(80_000)
        second.kill9()
        let third = try LeadProcess(dataDir: dataDir, extraArguments: keepEveryTask)
        _ = try third.waitReady()
        defer { _ = third.terminate() }
        #expect(eventually(timeout: 3) { !spoolFiles().contains { $0.hasPrefix(".tmp-") || $0.contains(".tmp.") } })
        let files = spoolFiles()
        let manifests = Set(files.filter { $0.hasSuffix(".json") && $0.hasPrefix("snapshot-") })
        for name in files where name.hasSuffix(".db.lz4") {
            #expect(manifests.contains(name.replacingOccurrences(of: ".db.lz4", with: ".json")), "\(name) has no manifest")
        }
        // And snapshots go on with fresh numbers.
        let created = try runPimesh(["snapshot", "create", "--data-dir", dataDir, "--json"])
        #expect(created.status == 0, "\(created.output)")
        let manifest = try APICoding.decode(SnapshotManifestView.self, from: Array(created.output.utf8))
        #expect(!manifests.contains("snapshot-" + String(format: "%010d", manifest.sequence) + ".json"))
        #expect(try runPimesh(["snapshot", "verify", dataDir + "/spool/" + manifest.file, "--data-dir", dataDir]).status == 0)
        let plain = dataDir + "/plain.db"
        let lz4 = Process()
        lz4.executableURL = URL(fileURLWithPath: "/usr/bin/lz4")
        lz4.arguments = ["-d", "-q", "-f", dataDir + "/spool/" + manifest.file, plain]
        try lz4.run()
        lz4.waitUntilExit()
        #expect(lz4.terminationStatus == 0)
        #expect(try sqlite(plain, "pragma integrity_check") == "ok")
        #expect(try sqlite(plain, "SELECT count(*) FROM tasks") == "80000")
    }
}

/// The manifest as a client reads it (the test target does not link PimeshSnapshot).
struct SnapshotManifestView: Decodable {
    var sequence: UInt64
    var file: String
    var nodeId: String
    var rawBytes: UInt64
}
