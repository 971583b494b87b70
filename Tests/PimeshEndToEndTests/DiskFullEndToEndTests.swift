import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// An SD card that fills up, as a small tmpfs under the data dir: the lead answers 507 naming the
/// cause, blames no agent, loses nothing it accepted, and carries on by itself once there is room.
@Suite(.serialized) struct DiskFullEndToEndTests {
    let root = LeadProcess.scratchDirectory()

    /// A 24 MiB tmpfs at `root/small`, unmounted by `unmount()`.
    func mountSmallFileSystem() throws -> String {
        let mountPoint = root + "/small"
        try Self.mountTmpfs(at: mountPoint)
        try FileManager.default.createDirectory(atPath: mountPoint + "/data", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        return mountPoint
    }

    /// A 24 MiB tmpfs at `mountPoint` (made if missing), mode 0700.
    static func mountTmpfs(at mountPoint: String) throws {
        try #require(geteuid() == 0, "mounting a tmpfs needs root; make test runs as root")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mountPoint])
        try #require(mounted.status == 0, "\(mounted.output)")
    }

    func unmount(_ mountPoint: String) {
        _ = try? runProcess("/bin/umount", ["-l", mountPoint])
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Writes `path` until the file system has no byte left.
    static func fill(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
        while chunk.count >= 512 {
            let written = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                try #require(errno == ENOSPC, "filling \(path): errno \(errno)")
                chunk = Array(chunk.prefix(chunk.count / 2))
            }
        }
    }

    func post(_ client: LeadClient, _ path: String, _ body: String) throws -> LoopbackHTTPClient.Response {
        try client.http.request("POST", path, headers: client.authorization + [("Content-Type", "application/json")], body: Array(body.utf8))
    }

    /// Heartbeats every 100 ms with a counter that moves, as an agent busy with its task does.
    final class BusyAgent: @unchecked Sendable {
        private let stopped = StopFlag()

        init(_ credentials: AgentCredentials) throws {
            let sender = try HeartbeatSender(credentials: credentials)
            let stopped = stopped
            Thread {
                var progress: UInt64 = 0
                while !stopped.isSet {
                    progress += 1
                    _ = try? sender.send(state: .ready, queueDepth: 0, progress: progress)
                    usleep(100_000)
                }
            }.start()
        }

        func stop() { stopped.set() }
        deinit { stopped.set() }
    }

    @Test func aFullDiskAnswers507BlamesNoAgentLosesNothingAndRecoversByItself() throws {
        let mountPoint = try mountSmallFileSystem()
        defer { unmount(mountPoint) }
        let dataDir = mountPoint + "/data"
        // A short lease: the full spell outlasts several, which must not take the task away.
        let config = root + "/pimesh.json"
        try #"{"tasks": {"lease_ms": 3000}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        var lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        var client = try lead.client()
        let worker = try client.register(.init(name: "worker", capabilities: ["work"]))
        let other = try client.register(.init(name: "other", capabilities: ["other"]))
        let beating = try BusyAgent(worker)
        defer { beating.stop() }
        func workerHealth() throws -> AgentHealthView? { try lead.agents().first { $0.name == "worker" }?.health }
        #expect(eventually(timeout: 10) { try workerHealth()?.condition == "alive" })
        let workerClient = try LeadClient.forAgent(worker, dataDir: dataDir)
        let task = try client.submit(.init(capability: "work", payload: "job"))
        #expect(try workerClient.pullWork(agentID: worker.id, waitMs: 2000).map(\.id) == [task.id])
        let pulledAt = Date()
        let otherTask = try client.submit(.init(capability: "other", payload: "waits for other"))

        try Self.fill(mountPoint + "/filler")
        // SQLite may still have room in pages it holds: submit until a commit needs more.
        let payload = String(repeating: "p", count: 16 * 1024)
        var accepted: [String] = [task.id, otherTask.id]
        var refusal: LoopbackHTTPClient.Response?
        let deadline = Date().addingTimeInterval(30)
        while refusal == nil && Date() < deadline {
            let answer = try post(client, "/v1/tasks", #"{"capability": "nobody", "payload": "\#(payload)"}"#)
            if answer.status == 201 {
                accepted.append(try APICoding.decode(TaskView.self, from: answer.body).id)
            } else {
                refusal = answer
            }
        }
        let refused = try #require(refusal, "30 s of submissions to a full disk were all accepted")
        #expect(refused.status == 507, "\(refused.text)")
        let message = (try JSONSerialization.jsonObject(with: Data(refused.body)) as? [String: Any])?["error"] as? String ?? ""
        #expect(message.hasPrefix("nothing was stored: the store is full (\(dataDir) has 0 bytes free)"), "\(message)")
        let status = try lead.status()
        #expect(status.store.failing?.contains("sqlite error 13") == true, "\(status.store.failing ?? "nil")")
        #expect((status.store.failedBatches ?? 0) >= 1)
        let shown = try runPimesh(["status", "--data-dir", dataDir])
        #expect(shown.output.contains("COMMITS FAILING"), "\(shown.output)")
        // Not ready while it can store nothing, and says why; alive all the same.
        let notReady = try client.http.request("GET", "/readyz")
        let readiness = (try JSONSerialization.jsonObject(with: Data(notReady.body)) as? [String: Any]) ?? [:]
        #expect(notReady.status == 503 && readiness["status"] as? String == "store_failing", "\(notReady.status) \(notReady.text)")
        #expect((readiness["error"] as? String ?? "").contains("the store is full"), "\(notReady.text)")
        #expect(readiness["failing_for_s"] is Double || readiness["failing_for_s"] is Int, "\(notReady.text)")
        #expect(try client.http.request("GET", "/healthz").status == 200)

        // Decided while full, stored once there is room: "other" takes its task and fails.
        let otherBeat = try HeartbeatThread(credentials: other)
        let otherClient = try LeadClient.forAgent(other, dataDir: dataDir)
        #expect(eventually(timeout: 10) { try otherClient.pullWork(agentID: other.id, waitMs: 500).contains { $0.id == otherTask.id } })
        otherBeat.stop()

        // The worker's result cannot be stored: 507 each time it retries, as the client
        // libraries do, past several leases and the 10 s in which a busy agent that completes
        // nothing is judged LOOP. It keeps the task, uses no attempt, and is not blamed.
        let result = String(repeating: "r", count: 60 * 1024)
        let asWorker = #"{"agent_id": "\#(worker.id)", "outcome": "succeeded", "result": "\#(result)"}"#
        var conditions: Set<String> = []
        var answers: Set<Int> = []
        while Date().timeIntervalSince(pulledAt) < 13 {
            answers.insert(try post(workerClient, "/v1/tasks/\(task.id)/result", asWorker).status)
            for _ in 0..<5 {
                conditions.insert(try workerHealth()?.condition ?? "?")
                usleep(200_000)
            }
        }
        #expect(answers == [507])
        #expect(conditions == ["alive"], "the worker was judged \(conditions) while the disk was full")
        let held = try client.task(id: task.id)
        #expect(held.state == "running" && held.agentName == "worker" && held.attempts == 1, "\(held)")
        #expect(try lead.status().tasks.requeued == 1, "only other's task was requeued")
        var open: [[String: Any]] = []
        #expect(eventually(timeout: 10) {
            open = try incidents(dataDir)
            return open.contains { ($0["title"] as? String ?? "").contains("the store is full") }
        }, "\(open)")

        // Room again: the retried result and new submissions go through without a restart.
        try FileManager.default.removeItem(atPath: mountPoint + "/filler")
        var stored: LoopbackHTTPClient.Response?
        #expect(eventually(timeout: 30) {
            stored = try post(workerClient, "/v1/tasks/\(task.id)/result", asWorker)
            return stored?.status == 200
        }, "\(stored?.text ?? "")")
        #expect(try client.task(id: task.id).state == "succeeded")
        #expect(try client.task(id: task.id).attempts == 1)
        accepted.append(try client.submit(.init(capability: "nobody", payload: "after")).id)
        #expect(eventually(timeout: 10) { try lead.status().store.failing == nil })
        #expect(try client.http.request("GET", "/readyz").status == 200)
        let health = try workerHealth()
        #expect(health?.condition == "alive", "\(String(describing: health))")
        // Every task the lead accepted is stored once; none it refused is.
        let listed = try client.tasks(limit: 10_000).tasks.map(\.id)
        #expect(Set(listed) == Set(accepted) && listed.count == accepted.count, "\(listed.count) stored, \(accepted.count) accepted")
        #expect(lead.terminate() == 0)
        let verified = try runPimesh(["audit", "verify", "--data-dir", dataDir])
        #expect(verified.status == 0, "\(verified.output)")

        // What was decided while the disk was full is in the store: a new lead reads it back.
        lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        _ = try lead.waitReady()
        client = try lead.client()
        let again = try client.task(id: otherTask.id)
        #expect(again.attempts == 1 && again.state == "queued", "\(again)")
        let kept = try incidents(dataDir)
        #expect(kept.contains { ($0["title"] as? String ?? "").contains("the store is full") }, "\(kept)")
    }

    /// A reload on a full disk is refused whole, with 507 and the cause, because its audit row
    /// comes first: nothing starts, stops or restarts. With room again, the next reload starts
    /// the new manifest.
    @Test func aReloadOnAFullDiskChangesNothingAndSaysWhy() throws {
        let mountPoint = try mountSmallFileSystem()
        defer { unmount(mountPoint) }
        let dataDir = mountPoint + "/data"
        // The config and agents.d stay off the full file system: an operator edits them there.
        let config = root + "/pimesh.json"
        try "{}".write(toFile: config, atomically: true, encoding: .utf8)
        let agentsDir = root + "/agents.d"
        try FileManager.default.createDirectory(atPath: agentsDir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        func addManifest(_ name: String) throws {
            let path = agentsDir + "/\(name).json"
            try #"{"name": "\#(name)", "command": "\#(LeadProcess.binary)", "args": ["sim-agent"], "capabilities": ["work"]}"#
                .write(toFile: path, atomically: true, encoding: .utf8)
            #expect(chmod(path, 0o600) == 0)
        }
        func pid(_ lead: LeadProcess, _ name: String) -> Int32? {
            (try? lead.agents().first { $0.name == name })??.supervision?.pid
        }
        try addManifest("first")
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        #expect(eventually(timeout: 10) { pid(lead, "first") != nil })
        let first = try #require(pid(lead, "first"))

        try Self.fill(mountPoint + "/filler")
        // SQLite may still have room in pages it holds: add agents until a reload is refused.
        var refusal: String?
        var added: [String] = []
        for index in 0..<40 where refusal == nil {
            let name = "new\(index)"
            try addManifest(name)
            let answer = try runPimesh(["reload", "--json", "--data-dir", dataDir])
            if answer.status != 0 {
                refusal = answer.output
            } else {
                let report = try #require(try JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any], "\(answer.output)")
                let agents = try #require(report["agents"] as? [String: Any], "\(answer.output)")
                #expect(agents["started"] as? [String] == [name], "\(agents)")
                #expect(((agents["stopped"] as? [String]) ?? []).isEmpty && ((agents["refused"] as? [String]) ?? []).isEmpty, "\(agents)")
                added.append(name)
            }
        }
        let refused = try #require(refusal, "40 reloads were taken on a full disk")
        #expect(
            refused.contains(
                "the lead answered 507: the audit log could not record this action, so it was not taken: nothing was stored: the store is full (\(dataDir) has "),
            "\(refused)")
        let name = "new\(added.count)"
        #expect(pid(lead, name) == nil)
        #expect(pid(lead, "first") == first)

        try FileManager.default.removeItem(atPath: mountPoint + "/filler")
        var answer = ""
        #expect(eventually(timeout: 30) {
            answer = try runPimesh(["reload", "--data-dir", dataDir]).output
            return answer.contains("started") && answer.contains(name)
        }, "\(answer)")
        #expect(eventually(timeout: 10) { pid(lead, name) != nil })
        #expect(pid(lead, "first") == first)
        #expect(try lead.agents().count == added.count + 2)
    }

    /// A lead started on a full disk cannot write lead.json, by which the CLI and agents find it:
    /// it says so in an incident and writes the file as soon as there is room.
    @Test func aLeadThatCannotWriteLeadJSONWritesItOnceItCan() throws {
        let mountPoint = try mountSmallFileSystem()
        defer { unmount(mountPoint) }
        let dataDir = mountPoint + "/data"
        let first = try LeadProcess(dataDir: dataDir)
        _ = try first.waitReady()
        #expect(first.terminate() == 0)
        try Self.fill(mountPoint + "/filler")
        let apiPort = freeLoopbackPort()
        let lead = try LeadProcess(dataDir: dataDir, apiPort: apiPort)
        defer { _ = lead.terminate() }
        let token = try String(contentsOfFile: dataDir + "/" + LeadEndpoint.tokenFileName, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let client = LeadClient(address: .loopback(host: "127.0.0.1", port: apiPort), token: token)
        // Answers at all: ready, or not ready because its store fails.
        #expect(eventually(timeout: 20) { (try? client.http.request("GET", "/readyz")) != nil })
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/lead.json"))
        let stopped = try runPimesh(["status", "--data-dir", dataDir])
        #expect(stopped.status != 0)
        var page = ""
        #expect(eventually(timeout: 10) {
            page = String(decoding: try client.get("/v1/incidents"), as: UTF8.self)
            return page.contains("the CLI and agents cannot find this lead")
        }, "\(page)")

        try FileManager.default.removeItem(atPath: mountPoint + "/filler")
        #expect(eventually(timeout: 15) { FileManager.default.fileExists(atPath: dataDir + "/lead.json") })
        let found = try runPimesh(["status", "--data-dir", dataDir])
        #expect(found.status == 0, "\(found.output)")
        #expect(lead.terminate() == 0)
    }

    func incidents(_ dataDir: String, _ extra: [String] = []) throws -> [[String: Any]] {
        let listed = try runPimesh(["incidents", "list", "--data-dir", dataDir, "--json"] + extra)
        #expect(listed.status == 0, "\(listed.output)")
        return try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]] ?? []
    }
}
