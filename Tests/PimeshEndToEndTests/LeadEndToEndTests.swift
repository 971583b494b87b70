import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

@Suite(.serialized) struct LeadEndToEndTests {
    @Test func registrationNeedsTheTokenAndValidBodies() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        let endpoint = try lead.waitReady()
        let http = LoopbackHTTPClient(address: .loopback(host: "127.0.0.1", port: endpoint.api.port))
        let token = try LeadDiscovery.token(dataDir: lead.dataDir)
        let body = Array(#"{"name": "cam-1"}"#.utf8)

        #expect(try http.request("POST", "/v1/agents", body: body).status == 401)
        #expect(try http.request("POST", "/v1/agents", headers: [("Authorization", "Bearer wrong")], body: body).status == 401)
        #expect(try http.request("GET", "/v1/status").status == 401)

        let auth = [("Authorization", "Bearer \(token)")]
        let broken = try http.request("POST", "/v1/agents", headers: auth, body: Array(#"{"name": "#.utf8))
        #expect(broken.status == 400)
        #expect(broken.text.contains("not valid JSON"))
        let wrongType = try http.request("POST", "/v1/agents", headers: auth, body: Array(#"{"name": 5}"#.utf8))
        #expect(wrongType.status == 400)
        let error = try JSONSerialization.jsonObject(with: Data(wrongType.body)) as! [String: Any]
        #expect(error["field"] as? String == "name")

        let created = try http.request("POST", "/v1/agents", headers: auth, body: body)
        #expect(created.status == 201)
        #expect(try http.request("POST", "/v1/agents", headers: auth, body: body).status == 409)
        #expect(try http.request("GET", "/v1/nothing-here", headers: auth).status == 404)
        // An agent is looked up by id or by name; neither matches here.
        let unknown = try http.request("GET", "/v1/agents/not-a-uuid", headers: auth)
        #expect(unknown.status == 404)
        #expect(unknown.text.contains("no agent with id or name"))
        #expect(try http.request("GET", "/v1/agents/\(AgentID.random())", headers: auth).status == 404)
        let createdID = try APICoding.decode(AgentCredentials.self, from: created.body).id
        #expect(try http.request("GET", "/v1/agents/\(createdID)", headers: auth).status == 200)
        let huge = Array("{\"name\": \"\(String(repeating: "a", count: 70_000))\"}".utf8)
        #expect(try http.request("POST", "/v1/agents", headers: auth, body: huge).status == 413)

        // Whatever the body, the lead answers 4xx and stays up.
        var rng = SystemRandomNumberGenerator()
        for i in 0..<200 {
            let length = Int.random(in: 0...300, using: &rng)
            var garbage = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if i % 3 == 0 { garbage = Array("{\"name\": \"x\(i)\", \"capabilities\": [\(i), {\"a\": []}]}".utf8) }
            if i % 3 == 1 { garbage = Array("{\"name\": [\"\(i)\"], \"class\": null}".utf8) }
            let answer = try http.request("POST", "/v1/agents", headers: auth, body: garbage)
            #expect((400..<500).contains(answer.status), "body \(i) got \(answer.status)")
        }
        #expect(try http.request("GET", "/healthz").status == 200)
        #expect(try lead.agents().count == 1)
        #expect(lead.terminate() == 0)
    }

    /// The lead execs itself once with malloc's per-thread caches cut to one chunk of each size
    /// (MallocTuning), keeping the operator's own GLIBC_TUNABLES, and not at all when they size
    /// the caches themselves.
    /// /proc/PID/environ holds what the running program was exec'd with, except that glibc
    /// ends each tunable with a NUL as it parses them: entries are read one per NUL.
    @Test func theLeadRunsWithOneCachedChunkPerSizeUnlessTheOperatorSizesTheCaches() throws {
        func execdWith(_ environment: [String: String]) throws -> [String] {
            let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory(), environment: environment)
            _ = try lead.waitReady()
            let pid = lead.process.processIdentifier
            let entries = try #require(FileManager.default.contents(atPath: "/proc/\(pid)/environ")).split(separator: 0)
            #expect(lead.terminate() == 0)
            return entries.map { String(decoding: $0, as: UTF8.self) }
        }
        if ProcessInfo.processInfo.environment["GLIBC_TUNABLES"] == nil {
            let entries = try execdWith([:])
            #expect(entries.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=1"))
            #expect(entries.contains("PIMESH_GLIBC_TUNABLES_BEFORE=unset"))
        }
        let kept = try execdWith(["GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"])
        #expect(kept.contains("GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072"))
        #expect(kept.contains("glibc.malloc.tcache_count=1"))
        #expect(kept.contains("PIMESH_GLIBC_TUNABLES_BEFORE==glibc.malloc.trim_threshold=131072"))
        let own = try execdWith(["GLIBC_TUNABLES": "glibc.malloc.tcache_count=2"])
        #expect(own.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=2"))
        #expect(!own.contains { $0.contains("tcache_count=1") || $0.hasPrefix("PIMESH_GLIBC") })
    }

    /// The lead parses its flags with `run`'s parser alone (Pimesh.main); help and errors still
    /// come from the whole command tree, named as `pimesh run`.
    @Test func runReportsHelpAndBadFlagsAsPimeshRun() throws {
        // A scratch data dir: a regression that let these start a lead must not write here.
        let dataDir = LeadProcess.scratchDirectory()
        let help = try runPimesh(["run", "--help", "--data-dir", dataDir])
        #expect(help.status == 0)
        #expect(help.output.contains("USAGE: pimesh run [--data-dir <data-dir>]"), "\(help.output)")
        for (arguments, error) in [
            (["run", "--data-dir", dataDir, "--api-port", "99999"], "Error: --api-port 99999 is not a port number"),
            (["run", "--data-dir", dataDir, "--bogus"], "Error: Unknown option '--bogus'"),
        ] {
            let (status, output) = try runPimesh(arguments)
            #expect(status == 64, "\(arguments): \(output)")
            #expect(output.contains(error), "\(arguments): \(output)")
            #expect(output.contains("See 'pimesh run --help' for more information."), "\(arguments): \(output)")
        }
    }

    @Test func statusHasTheKeysScriptsRelyOn() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        _ = try lead.waitReady()
        let status = try lead.statusJSON()
        let agents = status["agents"] as? [String: Any]
        for key in ["total", "ready", "transit", "conflict"] {
            #expect(agents?[key] is Int, "agents.\(key)")
        }
        #expect((status["node"] as? [String: Any])?["score"] is Int)
        let heartbeats = status["heartbeats"] as? [String: Any]
        #expect(heartbeats?["accepted"] is Int)
        let dropped = heartbeats?["dropped"] as? [String: Int]
        #expect(Set(dropped?.keys.map { $0 } ?? []) == Set(HeartbeatDropReason.allCases.map(\.description)))
        #expect((status["rss_bytes"] as? Int ?? 0) > 0)
        #expect((status["pss_bytes"] as? Int ?? 0) > 0)
        let (code, output) = try runPimesh(["status", "--data-dir", lead.dataDir, "--json"])
        #expect(code == 0)
        #expect(output.contains("\"pss_bytes\""))
        #expect(lead.terminate() == 0)
    }

    @Test func killNineAndRestartKeepsAgentsRegistered() throws {
        let dataDir = LeadProcess.scratchDirectory()
        let first = try LeadProcess(dataDir: dataDir)
        let endpoint = try first.waitReady()
        let client = try first.client()
        let credentials = try (0..<3).map { try client.register(.init(name: "worker-\($0)", capabilities: ["sense"])) }
        let senders = try credentials.map { try HeartbeatSender(credentials: $0) }
        for sender in senders { try sender.send(state: .ready, queueDepth: 1, progress: 1) }
        #expect(eventually { try first.status().agents.ready == 3 })

        first.kill9()
        let second = try LeadProcess(dataDir: dataDir, apiPort: endpoint.api.port, heartbeatPort: endpoint.heartbeat.port)
        _ = try second.waitReady()
        let agents = try second.agents()
        #expect(Set(agents.map(\.id)) == Set(credentials.map(\.id)))
        #expect(agents.allSatisfy { $0.state == "TRANSIT" })
        // The same agents, with the same secrets, resume without registering again.
        for sender in senders { try sender.send(state: .ready, queueDepth: 2, progress: 2) }
        #expect(eventually { try second.status().agents.ready == 3 })
        #expect(try second.status().heartbeats.droppedTotal == 0)
        #expect(second.terminate() == 0)
    }

    /// The listener reads datagrams in batches (recvmmsg), each into a slot of its buffer: both
    /// versions of a heartbeat fit, and a datagram longer than a slot is still too long.
    @Test func bothHeartbeatVersionsArriveAndLengthsAreJudgedOverUDP() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        _ = try lead.waitReady()
        let credentials = try lead.client().register(.init(name: "target"))
        let sender = try HeartbeatSender(credentials: credentials)
        var signer = try HeartbeatSigner(credentials: credentials)
        try sender.sendRaw(signer.next(state: .ready, queueDepth: 1, progress: 1))
        let v2 = signer.next(state: .ready, queueDepth: 2, progress: 2, workAck: WorkAck(highest: 0, window: 0), workSlots: 1)
        #expect(v2.count == HeartbeatDatagram.sizeWithAck)
        try sender.sendRaw(v2)
        #expect(eventually { try lead.status().heartbeats.accepted == 2 })
        try sender.sendRaw(v2 + [0])
        try sender.sendRaw(v2 + Array(repeating: 0, count: 2000))
        try sender.sendRaw(Array(v2.prefix(79)))
        #expect(eventually { try lead.status().heartbeats.droppedTotal == 3 })
        let dropped = try lead.status().heartbeats.dropped
        #expect(dropped["long"] == 2 && dropped["short"] == 1, "\(dropped)")
        #expect(try lead.agents().first?.progress == 2)
        #expect(lead.terminate() == 0)
    }

    @Test func tenThousandBadDatagramsOverUDPAreAllCounted() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        _ = try lead.waitReady()
        let credentials = try lead.client().register(.init(name: "target"))
        let sender = try HeartbeatSender(credentials: credentials)
        var signer = try HeartbeatSigner(credentials: credentials)
        let accepted = signer.next(state: .ready, queueDepth: 3, progress: 10)
        try sender.sendRaw(accepted)
        #expect(eventually { try lead.status().agents.ready == 1 })
        let before = try lead.agents()[0]

        var rng = SystemRandomNumberGenerator()
        var sent = 0
        while sent < 10_000 {
            // Paced in batches, so the loopback socket buffer never overflows and every
            // datagram reaches the lead to be counted: each small datagram takes about 1 KiB of
            // the default 208 KiB receive buffer, so 250 unread ones (a lead starved by a busy
            // machine) overflowed it.
            for _ in 0..<100 {
                var bytes: [UInt8]
                switch sent % 4 {
                case 0: bytes = (0..<Int.random(in: 0...120, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                case 1: bytes = Array(accepted.prefix(Int.random(in: 0...63, using: &rng)))
                case 2:
                    bytes = accepted
                    bytes[20] ^= 0x10  // forged iteration
                default: bytes = accepted  // replay
                }
                if bytes.count == 64 && sent % 4 == 0 { bytes[0] = 0 }
                try sender.sendRaw(bytes)
                sent += 1
            }
            let target = sent
            var counted = -1
            let allCounted = eventually(timeout: 15) {
                counted = try lead.status().heartbeats.droppedTotal
                return counted == target
            }
            #expect(allCounted, "after \(target) sent, counted \(counted)")
        }
        let status = try lead.status()
        #expect(status.heartbeats.droppedTotal == 10_000)
        #expect(status.heartbeats.accepted == 1)
        let after = try lead.agents()[0]
        #expect(after.iteration == before.iteration)
        #expect(after.progress == before.progress)
        #expect(after.impedance.queueDepth == before.impedance.queueDepth)
        #expect(lead.terminate() == 0)
    }

    @Test func swiftAgentLibraryRegistersOnceAndHeartbeats() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        _ = try lead.waitReady()
        let identity = lead.dataDir + "/agent.json"
        let agent = try PimeshAgent.registerOrResume(
            dataDir: lead.dataDir, identityFile: identity, registration: .init(name: "swift-1", agentClass: .edge, capabilities: ["relay"]))
        let again = try PimeshAgent.registerOrResume(
            dataDir: lead.dataDir, identityFile: identity, registration: .init(name: "swift-1"))
        #expect(again.credentials == agent.credentials)
        let beating = try HeartbeatThread(credentials: agent.credentials, report: .init(state: .ready, queueDepth: 2, progress: 5))
        #expect(eventually { try lead.agents().first?.state == "READY" })
        beating.stop()
        let view = try #require(try lead.agents().first)
        #expect(view.agentClass == .edge && view.capabilities == ["relay"] && view.impedance.queueDepth == 2)
        #expect(try lead.agents().count == 1)
        #expect(lead.terminate() == 0)
    }

    @Test func unixSocketsServeHeartbeatsAndTheAPI() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        let endpoint = try lead.waitReady()
        let socket = try #require(endpoint.api.unixSocket)
        let viaUnix = LoopbackHTTPClient(address: .unix(path: socket))
        #expect(try viaUnix.request("GET", "/healthz").status == 200)
        let credentials = try LeadClient(address: .unix(path: socket), token: LeadDiscovery.token(dataDir: lead.dataDir))
            .register(.init(name: "container-1", agentClass: .persistent))
        #expect(credentials.heartbeat.unixSocket != nil)
        try HeartbeatSender(credentials: credentials, preferUnixSocket: true).send(state: .conflict, queueDepth: 0, progress: 0)
        #expect(eventually { try lead.status().agents.conflict == 1 })
        #expect(lead.terminate() == 0)
    }

    @Test func sigtermStopsCleanlyAndASecondLeadIsRefused() throws {
        let dataDir = LeadProcess.scratchDirectory()
        let lead = try LeadProcess(dataDir: dataDir)
        _ = try lead.waitReady()
        let second = try LeadProcess(dataDir: dataDir)
        second.process.waitUntilExit()
        #expect(second.process.terminationStatus != 0)
        #expect(second.log.contains("already runs with data dir"))
        #expect(lead.terminate() == 0)
        #expect(!FileManager.default.fileExists(atPath: dataDir + "/lead.json"))
        let tokenMode = try FileManager.default.attributesOfItem(atPath: dataDir + "/node-token")[.posixPermissions] as? Int
        #expect(tokenMode == 0o600)
    }

    @Test func systemdHearsReadyAndWatchdog() throws {
        let dataDir = LeadProcess.scratchDirectory()
        let path = dataDir + "/notify.sock"
        let fd = try bindNotifySocket(path: path, timeoutSeconds: 5)
        defer { close(fd) }
        let lead = try LeadProcess(dataDir: dataDir, environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"])
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while messages.filter({ $0 == "WATCHDOG=1" }).count < 3 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            messages.append(String(decoding: buffer.prefix(n), as: UTF8.self))
        }
        #expect(messages.contains("READY=1"))
        #expect(messages.filter { $0 == "WATCHDOG=1" }.count >= 3)
        // READY=1 comes once the lead serves.
        #expect(try lead.client().get("/v1/status").isEmpty == false)
        #expect(lead.terminate() == 0)
        var stopping = false
        while !stopping {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            stopping = String(decoding: buffer.prefix(n), as: UTF8.self) == "STOPPING=1"
        }
        #expect(stopping)
    }

    @Test func badConfigIsRefusedWithKeyAndLine() throws {
        let dataDir = LeadProcess.scratchDirectory()
        let config = dataDir + "/pimesh.json"
        try "{\n  \"heartbeat\": {\n    \"interval\": 100\n  }\n}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (code, output) = try runPimesh(["run", "--data-dir", dataDir, "--config", config])
        #expect(code == 78)
        #expect(output.contains("pimesh.json:3: key \"heartbeat.interval\": unknown key"))
        let check = try runPimesh(["config", "check", config])
        #expect(check.status == 78)
        try "{\"heartbeat\": {\"interval_ms\": 100}}".write(toFile: config, atomically: true, encoding: .utf8)
        #expect(try runPimesh(["config", "check", config]).status == 0)

        // A syntax error names the line and column; the lead refuses to start on it.
        try "{\n  \"log_level\": \"info\"\n  \"data_dir\": \"/tmp\"\n}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let syntax = try runPimesh(["run", "--data-dir", dataDir, "--config", config])
        #expect(syntax.status == 78)
        #expect(syntax.output.contains("pimesh.json:3:3: not valid JSON: expected ',' or '}' after the value of \"log_level\""))

        // `config check` reads the manifests beside the config as the lead would, and names a
        // duplicate key in one of them with its line.
        try "{}".write(toFile: config, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try "{\"name\": \"w1\", \"command\": \"/bin/sleep\",\n \"name\": \"w2\"}".write(
            toFile: dataDir + "/agents.d/w.json", atomically: true, encoding: .utf8)
        let manifests = try runPimesh(["config", "check", config])
        #expect(manifests.status == 78)
        #expect(manifests.output.contains("agents.d/w.json:2: not valid JSON: duplicate key \"name\" (first at line 1)"))
        #expect(manifests.output.contains("0 manifests ok, 1 refused"))

        // Without a config file, what `pimesh run` without --config uses: the defaults, the data
        // dir from the environment (or --data-dir) and the agents.d in it. (A machine with the
        // Pi's /etc/pimesh/pimesh.json checks that file instead.)
        if !FileManager.default.fileExists(atPath: "/etc/pimesh/pimesh.json") {
            let defaults = try runPimesh(["config", "check"], environment: ["PATH": "/usr/bin:/bin", "PIMESH_DATA_DIR": dataDir])
            #expect(defaults.status == 78)
            #expect(defaults.output.contains("no config file (/etc/pimesh/pimesh.json does not exist): the defaults (data_dir \(dataDir), api 127.0.0.1:7420"), "\(defaults.output)")
            #expect(defaults.output.contains(dataDir + "/agents.d/w.json:2: not valid JSON: duplicate key"), "\(defaults.output)")
            try FileManager.default.removeItem(atPath: dataDir + "/agents.d/w.json")
            let flagged = try runPimesh(["config", "check", "--data-dir", dataDir], environment: ["PATH": "/usr/bin:/bin"])
            #expect(flagged.status == 0 && flagged.output.contains(dataDir + "/agents.d: 0 manifests ok, 0 refused"), "\(flagged.output)")
        }
    }

    @Test func clientsFindTheLeadByItsConfigAndExplainAMissingOrDeadOne() throws {
        let (code, output) = try runPimesh(["status", "--data-dir", "/nonexistent/pimesh"])
        #expect(code == 1)
        #expect(output.contains("no lead is running with data dir /nonexistent/pimesh"))
        #expect(!output.contains("pimesh run"), "an error must never suggest starting a second lead")

        // The config's data_dir locates the lead, from any directory, with no environment (sudo).
        let dataDir = LeadProcess.scratchDirectory()
        let elsewhere = LeadProcess.scratchDirectory()
        try "{\"data_dir\": \"\(dataDir)\"}".write(toFile: elsewhere + "/pimesh.json", atomically: true, encoding: .utf8)
        let lead = try LeadProcess(dataDir: dataDir)
        let endpoint = try lead.waitReady()
        let found = try runPimesh(["status", "--config", elsewhere + "/pimesh.json"], directory: elsewhere, environment: ["PATH": "/usr/bin:/bin"])
        #expect(found.status == 0, "\(found.output)")
        #expect(found.output.contains("node"))

        // After kill -9 the stale lead.json is named for what it is, not as a socket error.
        lead.kill9()
        defer { lead.stopOrphanedAgents() }
        let gone = try runPimesh(["status", "--config", elsewhere + "/pimesh.json"], directory: elsewhere, environment: [:])
        #expect(gone.status == 1)
        #expect(gone.output.contains("the lead is not running (last pid \(endpoint.pid), started "), "\(gone.output)")
        #expect(gone.output.contains("pid \(endpoint.pid) is gone"))
        #expect(!gone.output.contains("Connection refused"))
        #expect(!gone.output.contains("pimesh run"))
    }

    @Test func swarmAgentsBecomeReadyWithDifferentScores() throws {
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory())
        _ = try lead.waitReady()
        let swarm = Process()
        swarm.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        swarm.arguments = ["swarm", "--data-dir", lead.dataDir, "--agents", "30", "--duration", "20"]
        swarm.standardError = FileHandle.nullDevice
        try swarm.run()
        defer {
            if swarm.isRunning { kill(swarm.processIdentifier, SIGTERM) }
            swarm.waitUntilExit()
        }
        let (code, output) = try runPimesh(["status", "--data-dir", lead.dataDir, "--until-ready", "30", "--timeout", "15"])
        #expect(code == 0, "\(output)")
        #expect(eventually { try lead.agents().allSatisfy { $0.impedance.latencyMs > 0 || $0.iteration != nil } })
        let scores = Set(try lead.agents().map(\.impedance.score))
        #expect(scores.count > 5)
        let table = try runPimesh(["agents", "--data-dir", lead.dataDir])
        #expect(table.output.contains("swarm-030"))
        // Issue 15: the default table fits 100 columns, names capabilities; -o wide has the rest.
        let rows = table.output.split(separator: "\n")
        #expect(rows.allSatisfy { $0.count <= 100 }, "\(rows.map(\.count).max() ?? 0) columns")
        #expect(rows.first?.contains("CAPABILITIES") == true && rows.first?.contains("SEEN") == true)
        #expect(try runPimesh(["agents", "-o", "wide", "--data-dir", lead.dataDir]).output.contains("RELIAB"))
        let filtered = try runPimesh(["agents", "--condition", "alive", "--capability", "no-such-thing", "--data-dir", lead.dataDir])
        #expect(filtered.output.contains("\n0 agents"))
        let badCondition = try runPimesh(["agents", "--condition", "sleepy", "--data-dir", lead.dataDir])
        #expect(badCondition.status != 0 && badCondition.output.contains("is not one of pending, unknown, alive"))
        // Any unique id prefix of 4 or more characters names the agent.
        let someone = try #require(try lead.agents().first)
        let byPrefix = try APICoding.decode(AgentView.self, from: try lead.client().get("/v1/agents/" + someone.id.description.prefix(8)))
        #expect(byPrefix.name == someone.name)
        kill(swarm.processIdentifier, SIGTERM)
        swarm.waitUntilExit()
        #expect(swarm.terminationStatus == 0)
        // The wall clock steps back an hour: one agent's last accepted heartbeat is from before.
        let saved = try APICoding.decode(
            [AgentCredentials].self, from: Array(try Data(contentsOf: URL(fileURLWithPath: lead.dataDir + "/swarm-swarm.json"))))
        var stepped = try #require(saved.first)
        let hourAhead = UInt64(Clock.wallMilliseconds() + 3_600_000) * 1000
        stepped.lastAcceptedIteration = hourAhead
        _ = try HeartbeatSender(credentials: stepped).send(state: .ready, queueDepth: 0, progress: 0)
        #expect(eventually { try lead.agents().first { $0.id == stepped.id }?.iteration == hourAhead + 1 })
        // A restarted swarm reuses its saved identities instead of registering new agents, and
        // starts each above the iteration the lead last accepted from it.
        let again = try runPimesh(["swarm", "--data-dir", lead.dataDir, "--agents", "30", "--duration", "1.5"])
        #expect(again.status == 0, "\(again.output)")
        #expect(again.output.contains("registered_now=0"))
        #expect(try lead.agents().count == 30)
        #expect(try (lead.agents().first { $0.id == stepped.id }?.iteration ?? 0) > hourAhead + 1)
        #expect(lead.terminate() == 0)
    }
}
