import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import PimeshTestSupport
import Testing

/// Issue 12: agents cannot hurt the lead or each other.
@Suite(.serialized) struct IsolationEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func manifest(_ name: String, _ json: String) throws {
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try json.write(toFile: dataDir + "/agents.d/\(name).json", atomically: true, encoding: .utf8)
    }

    func supervisedPID(_ lead: LeadProcess, _ name: String) -> Int32? {
        (try? lead.agents().first { $0.name == name })??.supervision?.pid
    }

    @Test func aSupervisedChildHoldsOnlyStdioAndRunsAsItsManifestsUser() throws {
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        try manifest("sleeper", #"{"name": "sleeper", "command": "/bin/sleep", "args": ["600"]}"#)
        try manifest("nobody", #"{"name": "nobody", "command": "/bin/sleep", "args": ["600"], "user": "nobody", "groups": ["nogroup"]}"#)
        try manifest("nobody2", #"{"name": "nobody2", "command": "/bin/sleep", "args": ["600"], "user": "nobody"}"#)
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        let endpoint = try lead.waitReady()
        var pid: Int32 = 0
        #expect(eventually(timeout: 10) { supervisedPID(lead, "sleeper").map { pid = $0 } != nil })
        // The lead holds its API listener, heartbeat sockets, the database…; the child none of
        // them, only stdio and the pipe that holds its secret, which is in no environment.
        let environ = try #require(FileManager.default.contents(atPath: "/proc/\(pid)/environ")).split(separator: 0)
            .map { String(decoding: $0, as: UTF8.self) }
        #expect(!environ.contains { $0.hasPrefix("PIMESH_AGENT_SECRET=") })
        let secretFD = try #require(environ.first { $0.hasPrefix("PIMESH_AGENT_SECRET_FD=") }.flatMap { Int($0.dropFirst(23)) })
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
        #expect(fds == [0, 1, 2, secretFD])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(secretFD)").hasPrefix("pipe:"))
        // The agent reads 64 hex digits from it, once: the pipe has no writer left, and is empty after.
        let pipe = open("/proc/\(pid)/fd/\(secretFD)", O_RDONLY | O_CLOEXEC)
        try #require(pipe >= 0)
        defer { close(pipe) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let first = read(pipe, &buffer, buffer.count)
        #expect(first == 64 && buffer[..<64].allSatisfy { ("0"..."9").contains(Character(UnicodeScalar($0))) || ("a"..."f").contains(Character(UnicodeScalar($0))) })
        #expect(read(pipe, &buffer, buffer.count) == 0)

        var other: Int32 = 0
        #expect(eventually(timeout: 10) { supervisedPID(lead, "nobody").map { other = $0 } != nil })
        let status = try String(contentsOfFile: "/proc/\(other)/status", encoding: .utf8)
        let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst().first
        #expect(uid == "65534", "\(status)")
        let groups = status.split(separator: "\n").first { $0.hasPrefix("Groups:") } ?? ""
        #expect(!groups.split(separator: " ").contains("0"), "no root group left over: \(groups)")
        let view = try #require(try lead.agents().first { $0.name == "nobody" })
        #expect(view.supervision?.user == "nobody")
        // The lead runs as root here: the agent without a user runs as root, and status says so.
        let warnings = try #require(try lead.status().health).warnings
        if geteuid() == 0, getpwnam("pimesh-agent") == nil {
            #expect(warnings.contains { $0.hasPrefix("sleeper runs as root") })
        }
        #expect(!warnings.contains { $0.hasPrefix("nobody") })
        // Two agents of one user can read each other's secrets: said once, naming the user.
        #expect(warnings.filter { $0.contains("run as nobody") } == [
            "2 agents run as nobody: each can read the others' secrets (their memory, /proc/PID/fd); give each manifest a \"user\" of its own to keep them apart"
        ], "\(warnings)")

        // An operator action over the unix socket is recorded with the caller's uid.
        let unix = LoopbackHTTPClient(address: .unix(path: try #require(endpoint.api.unixSocket)))
        #expect(try unix.request("POST", "/v1/agents/sleeper/freeze").status == 200)
        #expect(try unix.request("POST", "/v1/agents/sleeper/thaw").status == 200)
        let events = try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events")).events
        #expect(events.contains { $0.kind == "frozen" && $0.detail.contains("by operator (uid \(geteuid()))") }, "\(events)")
    }

    /// Issue 16: the unit runs the lead as the `pimesh` user with CAP_SETUID, CAP_SETGID and
    /// CAP_KILL as ambient capabilities; setpriv gives a lead the same here (as user daemon).
    /// Ambient capabilities survive exec, so the lead must clear them for its agents, whether it
    /// switches to another user (nobody) or not (daemon, its own).
    @Test func aLeadWithTheUnitsCapabilitiesStartsAgentsWithNone() throws {
        try #require(geteuid() == 0, "setpriv needs root to hand out capabilities; make test runs as root")
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        try manifest("nobody", #"{"name": "nobody", "command": "/bin/sleep", "args": ["600"], "user": "nobody", "groups": ["nogroup"]}"#)
        try manifest("own", #"{"name": "own", "command": "/bin/sleep", "args": ["600"], "user": "daemon"}"#)
        let daemon = try #require(getpwnam("daemon")).pointee
        for path in [dataDir, dataDir + "/agents.d", dataDir + "/agents.d/nobody.json", dataDir + "/agents.d/own.json"] {
            #expect(chown(path, daemon.pw_uid, daemon.pw_gid) == 0)
        }
        #expect(chmod(dataDir, 0o700) == 0)
        let capabilities = "-all,+setuid,+setgid,+kill"
        let lead = try LeadProcess(
            dataDir: dataDir,
            wrapper: [
                "/usr/bin/setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", "--inh-caps=\(capabilities)",
                "--ambient-caps=\(capabilities)", "--bounding-set=\(capabilities)",
            ])
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()

        func status(_ pid: Int32) throws -> [String: String] {
            let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            return fields
        }
        let leadStatus = try status(lead.process.processIdentifier)
        #expect(leadStatus["Uid"]?.hasPrefix("\(daemon.pw_uid)\t") == true)
        #expect(leadStatus["CapAmb"] == "00000000000000e0", "the lead has what the unit gives it")

        var pids: [String: Int32] = [:]
        for name in ["nobody", "own"] {
            #expect(eventually(timeout: 10) { supervisedPID(lead, name).map { pids[name] = $0 } != nil }, "\(lead.log)")
            let agent = try status(try #require(pids[name]))
            for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
                #expect(agent[set] == "0000000000000000", "\(name) holds \(set) \(agent[set] ?? "?")")
            }
        }
        #expect(try status(try #require(pids["nobody"]))["Uid"]?.hasPrefix("65534\t") == true)
        #expect(try status(try #require(pids["own"]))["Uid"]?.hasPrefix("\(daemon.pw_uid)\t") == true)
        // An agent of the lead's own user may read the data dir: status says so.
        let warnings = try #require(try lead.status().health).warnings
        #expect(warnings.contains(#"1 agent runs as the lead's own user (daemon): able to read every secret in the data dir; give each manifest a "user" of its own"#), "\(warnings)")
        // CAP_KILL: the lead stops what runs as another user.
        _ = try lead.client().post("/v1/agents/nobody/restart", json: [])
        #expect(eventually(timeout: 10) { supervisedPID(lead, "nobody").map { $0 != pids["nobody"] } ?? false })
        #expect(kill(try #require(pids["nobody"]), 0) != 0, "the old agent is gone")
    }

    /// The .deb's postinst makes the tokens before the lead first starts; the lead then uses them.
    @Test func tokenInitMakesBothTokensOnceAndTheLeadKeepsThem() throws {
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let fresh = dataDir + "/var/lib/pimesh"
        let first = try runPimesh(["token", "init", "--data-dir", fresh, "--json"])
        #expect(first.status == 0, "\(first.output)")
        let made = try #require(try JSONSerialization.jsonObject(with: Data(first.output.utf8)) as? [[String: Any]])
        #expect(made.map { $0["kind"] as? String } == ["operator", "join"])
        #expect(made.allSatisfy { $0["created"] as? Bool == true })
        #expect(try FileManager.default.attributesOfItem(atPath: fresh)[.posixPermissions] as? Int == 0o700)
        var tokens: [String] = []
        for name in ["node-token", "join-token"] {
            #expect(try FileManager.default.attributesOfItem(atPath: fresh + "/" + name)[.posixPermissions] as? Int == 0o600)
            tokens.append(try String(contentsOfFile: fresh + "/" + name, encoding: .utf8))
        }
        let second = try runPimesh(["token", "init", "--data-dir", fresh])
        #expect(second.output == "operator token \(fresh)/node-token: kept\njoin token \(fresh)/join-token: kept\n")
        #expect(try String(contentsOfFile: fresh + "/node-token", encoding: .utf8) == tokens[0])

        let lead = try LeadProcess(dataDir: fresh)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        #expect(try String(contentsOfFile: fresh + "/node-token", encoding: .utf8) == tokens[0])
        #expect(try lead.status().agents.ready == 0, "the operator token made before the lead opens its API")
    }

    @Test func filesAreTheLeadsAloneAndALooseTokenIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        chmod(dataDir, 0o755)
        do {
            let lead = try LeadProcess(dataDir: dataDir)
            let client = try { _ = try lead.waitReady(); return try lead.client() }()
            // A snapshot stages a copy of the database (every agent's secret) in the run dir.
            _ = try client.register(.init(name: "a1"))
            _ = try client.post("/v1/snapshots", json: [])
            #expect(lead.terminate() == 0)
        }
        let find = Process()
        find.executableURL = URL(fileURLWithPath: "/usr/bin/find")
        find.arguments = [dataDir, "-perm", "/077", "-not", "-name", "lead-*.log"]
        let pipe = Pipe()
        find.standardOutput = pipe
        try find.run()
        find.waitUntilExit()
        let loose = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").map(String.init).sorted()
        // Only the run dir (0750, for the operator group's api.sock) and the sockets, which the
        // lead removes when it stops; the data dir was tightened from 0755.
        #expect(loose == [dataDir + "/run"], "\(loose)")

        // OpenSSH's rule for keys: a token others can read stops the lead, with the fix.
        chmod(dataDir + "/node-token", 0o644)
        let refused = try LeadProcess(dataDir: dataDir)
        refused.process.waitUntilExit()
        #expect(refused.process.terminationStatus != 0)
        #expect(refused.log.contains("node-token is readable by others (mode 0644)"))
        #expect(refused.log.contains("chmod 600"))
        chmod(dataDir + "/node-token", 0o600)

        // A data dir others could write into is refused, not tightened over what may have been
        // planted there; so are a link in the run dir and a database file of another user.
        func refusal() throws -> String {
            let lead = try LeadProcess(dataDir: dataDir)
            lead.process.waitUntilExit()
            #expect(lead.process.terminationStatus != 0, "\(lead.log)")
            return lead.log
        }
        chmod(dataDir, 0o777)
        let open = try refusal()
        #expect(open.contains("refusing to start: \(dataDir) is writable by group or others (mode 777)"), "\(open)")
        #expect(open.contains("chmod go-w"))
        chmod(dataDir, 0o700)
        let victim = dataDir + "-victim"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: victim) }
        try? FileManager.default.removeItem(atPath: dataDir + "/run/logs")
        try FileManager.default.createSymbolicLink(atPath: dataDir + "/run/logs", withDestinationPath: victim)
        let linked = try refusal()
        #expect(linked.contains("refusing to start: \(dataDir)/run/logs is a symbolic link"), "\(linked)")
        try FileManager.default.removeItem(atPath: dataDir + "/run/logs")
        // Each dir the lead writes into: here the incident records'.
        try? FileManager.default.createDirectory(atPath: dataDir + "/incidents", withIntermediateDirectories: false)
        #expect(chmod(dataDir + "/incidents", 0o777) == 0)
        let looseInside = try refusal()
        #expect(looseInside.contains("refusing to start: \(dataDir)/incidents is writable by group or others (mode 777)"), "\(looseInside)")
        #expect(chmod(dataDir + "/incidents", 0o700) == 0)
        #expect(chown(dataDir + "/pimesh.db", 65534, 65534) == 0)
        let foreign = try refusal()
        #expect(foreign.contains("refusing to start: \(dataDir)/pimesh.db belongs to uid 65534"), "\(foreign)")
        #expect(chown(dataDir + "/pimesh.db", 0, 0) == 0)
        // The lock is opened without following a link: the file it points to is not created.
        try FileManager.default.removeItem(atPath: dataDir + "/lead.lock")
        try FileManager.default.createSymbolicLink(atPath: dataDir + "/lead.lock", withDestinationPath: victim + "/created-by-root")
        let lockLink = try refusal()
        #expect(lockLink.contains("lead.lock"), "\(lockLink)")
        #expect(!FileManager.default.fileExists(atPath: victim + "/created-by-root"))
        try FileManager.default.removeItem(atPath: dataDir + "/lead.lock")
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        // A user who may not look into the data dir is told so, not that no lead runs (a copy of
        // the CLI, since the checkout's path may be closed to that user).
        let cli = Scratch.directory("pimesh-cli", mode: 0o755) + "/pimesh"
        try FileManager.default.copyItem(atPath: LeadProcess.binary, toPath: cli)
        #expect(chmod(cli, 0o755) == 0)
        let outsider = try runProcess("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", cli, "status", "--data-dir", dataDir])
        #expect(outsider.status != 0)
        #expect(outsider.output.contains("cannot read \(dataDir)/lead.json: permission denied"), "\(outsider.output)")
    }

    /// The config names the agents dir, the upload target and the release keys: one that others could
    /// write stops the lead (78, with the fix), and `pimesh config check` says the same.
    @Test func aConfigOthersCouldWriteStopsTheLead() throws {
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let config = dataDir + "/pimesh.json"
        try "{}".write(toFile: config, atomically: true, encoding: .utf8)
        chmod(config, 0o666)
        let refused = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        refused.process.waitUntilExit()
        #expect(refused.process.terminationStatus == 78)
        #expect(refused.log.contains("\(config): not trusted: \(config) is writable by group or others (mode 666)"), "\(refused.log)")
        #expect(refused.log.contains("chmod go-w \(config)"))
        let check = try runPimesh(["config", "check", config])
        #expect(check.status == 78 && check.output.contains("not trusted"), "\(check.output)")
        chmod(config, 0o644)
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
    }

    @Test func anAgentsCredentialOpensItsOwnWorkAndNothingElse() throws {
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        try manifest("claimed", #"{"name": "claimed", "command": "/bin/sleep", "args": ["600"]}"#)
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let operatorClient = try lead.client()
        let join = try String(contentsOfFile: dataDir + "/join-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let joinClient = LeadClient(address: operatorClient.http.address, token: join)
        // The join token registers, and does nothing else.
        let alice = try joinClient.register(.init(name: "alice", capabilities: ["work"]))
        let bob = try joinClient.register(.init(name: "bob", capabilities: ["other"]))
        #expect(alice.api != nil)
        #expect(throws: LeadClient.APIError.self) { try joinClient.get("/v1/agents") }
        // A name a supervised manifest claims is not for the taking.
        do {
            _ = try joinClient.register(.init(name: "claimed"))
            Issue.record("a manifest's name was registered")
        } catch let error as LeadClient.APIError {
            #expect(error.status == 409)
            // Where the lead's manifests are is the operator's to know, not a join-token holder's.
            #expect(error.message == #"the name "claimed" belongs to a supervised agent"#, "\(error)")
        }
        let aliceClient = try LeadClient.forAgent(alice, dataDir: dataDir)
        let beats = [try HeartbeatThread(credentials: alice), try HeartbeatThread(credentials: bob)]
        defer { beats.forEach { $0.stop() } }
        #expect(eventually(timeout: 10) { try lead.agents().filter { $0.state == "READY" }.count == 2 })
        let task = try operatorClient.submit(.init(capability: "work", payload: "secret payload"))
        #expect(task.agentName == "alice")

        func status(_ client: LeadClient, _ method: String, _ path: String, _ body: String = "{}") throws -> Int {
            try client.http.request(method, path, headers: client.authorization + [("Content-Type", "application/json")], body: Array(body.utf8)).status
        }
        let bobClient = try LeadClient.forAgent(bob, dataDir: dataDir)
        // Bob cannot read Alice's work, post her result, answer for her, or act as an operator.
        #expect(try status(bobClient, "GET", "/v1/agents/\(alice.id)/work") == 403)
        let asAlice = #"{"agent_id": "\#(alice.id)", "outcome": "succeeded"}"#
        #expect(try status(bobClient, "POST", "/v1/tasks/\(task.id)/result", asAlice) == 403)
        let asBob = #"{"agent_id": "\#(bob.id)", "outcome": "failed", "error": "sabotage"}"#
        let refusal = try bobClient.http.request(
            "POST", "/v1/tasks/\(task.id)/result", headers: bobClient.authorization + [("Content-Type", "application/json")], body: Array(asBob.utf8))
        // Nor learn who holds it.
        #expect(refusal.status == 403 && !refusal.text.contains(alice.id.description) && refusal.text.contains("held by another agent"), "\(refusal.text)")
        #expect(try status(bobClient, "POST", "/v1/ops/x/answers", #"{"agent_id": "\#(alice.id)", "state": 1}"#) == 403)
        // Nor learn which names or id prefixes exist: Bob and the join token get one answer for
        // Alice's name, her id's start, and names and prefixes no agent has (a 403 against a 404
        // or 409 told them apart, and a 403 for a name gave the id behind it).
        let aliceStart = String(alice.id.description.prefix(6))
        for client in [bobClient, joinClient] {
            var texts: Set<String> = []
            for target in ["alice", aliceStart, "nobody", "0000", alice.id.description] {
                let answer = try client.http.request("GET", "/v1/agents/\(target)/work", headers: client.authorization)
                #expect(answer.status == 403, "\(target): \(answer.status) \(answer.text)")
                #expect(!answer.text.contains(alice.id.description) || target == alice.id.description, "\(answer.text)")
                texts.insert(answer.text.replacingOccurrences(of: target, with: "TARGET"))
            }
            #expect(texts.count == 1, "\(texts)")
        }
        // An agent names itself by id or name.
        #expect(try status(bobClient, "GET", "/v1/agents/bob/work") == 200)
        #expect(try status(bobClient, "GET", "/v1/agents/\(bob.id)/work") == 200)
        for (method, path) in [
            ("GET", "/v1/status"), ("GET", "/v1/agents"), ("POST", "/v1/agents"), ("POST", "/v1/agents/alice/heal"),
            ("POST", "/v1/agents/alice/freeze"), ("POST", "/v1/agents/alice/thaw"), ("POST", "/v1/agents/alice/quarantine"),
            ("POST", "/v1/agents/alice/release"), ("POST", "/v1/tasks/\(task.id)/cancel"), ("POST", "/v1/snapshots"),
            ("GET", "/v1/tasks"), ("POST", "/v1/tasks"), ("POST", "/v1/tokens/join/rotate"), ("GET", "/v1/events"),
        ] {
            #expect(try status(bobClient, method, path) == 403, "\(method) \(path)")
        }
        // A forged credential (Bob's id with Alice's MAC) is no credential at all.
        let forged = LeadClient(
            address: bobClient.http.address,
            token: "agent.\(bob.id)." + String(AgentAPICredential.bearer(for: alice)!.split(separator: ".").last!))
        #expect(try status(forged, "GET", "/v1/agents/\(bob.id)/work") == 401)

        // A name made of the start of Alice's id names neither for an operator: an operator who
        // copied the id's start from a table would otherwise act on the agent that chose the name.
        let squatter = try joinClient.register(.init(name: String(alice.id.description.prefix(8))))
        do {
            _ = try operatorClient.get("/v1/agents/" + alice.id.description.prefix(8))
            Issue.record("a name that starts another agent's id was resolved")
        } catch let error as LeadClient.APIError {
            #expect(error.status == 409 && error.message.contains("alice"), "\(error)")
        }
        #expect(try APICoding.decode(AgentView.self, from: operatorClient.get("/v1/agents/\(squatter.id)")).name == squatter.name)
        #expect(try APICoding.decode(AgentView.self, from: operatorClient.get("/v1/agents/\(alice.id)")).name == "alice")

        // Alice takes her own work and finishes it; the task is hers alone.
        let items = try aliceClient.pullWork(agentID: alice.id, waitMs: 1000)
        #expect(items.map(\.id) == [task.id])
        #expect(items.first?.payload == "secret payload")
        #expect(try aliceClient.postResult(taskID: task.id, ResultReport(agentID: alice.id, outcome: .succeeded, result: "done")))
        #expect(try operatorClient.task(id: task.id).state == "succeeded")
        #expect(try lead.agents().allSatisfy { $0.quarantined == false })
        // An operator's cancel and release are recorded with who asked.
        let second = try operatorClient.submit(.init(capability: "work", payload: "never done"))
        _ = try operatorClient.post("/v1/tasks/\(second.id)/cancel", json: Array("{}".utf8))
        _ = try operatorClient.post("/v1/agents/bob/quarantine", json: Array("{}".utf8))
        _ = try operatorClient.post("/v1/agents/bob/release", json: Array("{}".utf8))
        let events = try APICoding.decode(HealthEventList.self, from: operatorClient.get("/v1/events")).events
        #expect(events.contains { $0.kind == "task_cancelled" && $0.detail == "task \(second.id) cancelled by operator (token)" }, "\(events)")
        #expect(events.contains { $0.kind == "released" && $0.agent == "bob" && $0.detail.hasSuffix("by operator (token)") })

        // Rotating the join token ends the old one at once.
        _ = try operatorClient.post("/v1/tokens/join/rotate", json: [])
        #expect(throws: LeadClient.APIError.self) { try joinClient.register(.init(name: "carol")) }
        let rotated = try String(contentsOfFile: dataDir + "/join-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(rotated != join)
        _ = try LeadClient(address: operatorClient.http.address, token: rotated).register(.init(name: "carol"))
    }

    @Test func theUnixSocketKnowsTheOperatorByUID() throws {
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        let endpoint = try lead.waitReady()
        let socket = try #require(endpoint.api.unixSocket)
        // No token: the lead reads our uid (the lead's own) from the socket.
        let unix = LoopbackHTTPClient(address: .unix(path: socket))
        #expect(try unix.request("GET", "/v1/status").status == 200)
        // Over TCP there is no peer uid: a token is needed.
        let tcp = LoopbackHTTPClient(address: .loopback(host: "127.0.0.1", port: endpoint.api.port))
        #expect(try tcp.request("GET", "/v1/status").status == 401)
        // Another user on the socket (nobody, not in the pimesh group) gets 401.
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        curl.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          "--unix-socket", socket, "http://localhost/v1/status"]
        let pipe = Pipe()
        curl.standardOutput = pipe
        try curl.run()
        curl.waitUntilExit()
        let code = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // 000: the socket's modes (0660, run dir 0750) already keep nobody out; 401 if it got in.
        #expect(code == "000" || code == "401", "\(code)")
    }
}
