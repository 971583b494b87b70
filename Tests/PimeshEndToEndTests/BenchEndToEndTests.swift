import Foundation
import PimeshAgent
import PimeshSystem
import Testing

/// Issue 14: `pimesh bench run`, the on-device load benchmark, end to end with supervisord beside it.
@Suite(.serialized) struct BenchEndToEndTests {
    @Test func aTwoStepRunWritesACompleteReportWithSupervisordBesideIt() throws {
        let scratch = LeadProcess.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let out = scratch + "/report"
        let run = try runPimesh([
            "bench", "run", "--agents", "2,5", "--duration", "2s", "--settle", "1s", "--kills", "2", "--attached-kills", "1", "--tasks", "20",
            "--compare", "supervisord", "--out", out, "--scratch", scratch, "--json",
        ])
        #expect(run.status == 0, "\(run.output)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as? [String: Any]
        let report = try #require(json)
        #expect(report["settle_seconds"] as? Double == 1)
        let machine = try #require(report["machine"] as? [String: Any])
        #expect((machine["cores"] as? Int ?? 0) >= 1)
        #expect((machine["memory_bytes"] as? Int ?? 0) > 0)
        #expect(!(machine["cpu_model"] as? String ?? "").isEmpty)
        #expect((machine["storage"] as? String ?? "unknown") != "unknown")
        let steps = try #require(report["steps"] as? [[String: Any]])
        #expect(steps.map { $0["agents"] as? Int } == [2, 5])
        for step in steps {
            let agents = step["agents"] as? Int ?? 0
            let lead = try #require(step["lead"] as? [String: Any])
            #expect((lead["pss_bytes"] as? Int ?? 0) > 1 << 20, "the lead's PSS was read: \(lead)")
            #expect((lead["private_bytes"] as? Int ?? 0) > 0)
            #expect((lead["cpu_percent_of_core"] as? Double ?? -1) >= 0)
            let heartbeats = try #require(step["heartbeats"] as? [String: Any])
            // 2 s at one heartbeat per 250 ms from every agent, the supervised ones included.
            #expect((heartbeats["accepted"] as? Int ?? 0) >= agents * 4, "\(heartbeats)")
            let tasks = try #require(step["tasks"] as? [String: Any])
            #expect(tasks["succeeded"] as? Int == 20, "\(tasks)")
            let submitToResult = try #require(tasks["submit_to_result"] as? [String: Any])
            #expect(submitToResult["count"] as? Int == 20)
            #expect((submitToResult["p99_ms"] as? Double ?? 0) >= (submitToResult["p50_ms"] as? Double ?? 1))
            let detection = try #require(step["detection"] as? [String: Any])
            let exitSeen = try #require(detection["exit_seen"] as? [String: Any])
            #expect(exitSeen["count"] as? Int == 2)
            let back = try #require(detection["heartbeating_again"] as? [String: Any])
            #expect((back["p50_ms"] as? Double ?? 0) > 0)
            let phi = try #require(detection["phi_suspicion"] as? [String: Any])
            #expect(phi["count"] as? Int == 1)
            // Phi suspects within a few intervals, never before the agent has missed one.
            #expect((phi["p50_ms"] as? Double ?? 0) > 200, "\(phi)")
            let supervisord = try #require(step["supervisord"] as? [String: Any])
            #expect(supervisord["programs"] as? Int == agents)
            #expect(((supervisord["process"] as? [String: Any])?["pss_bytes"] as? Int ?? 0) > 1 << 20)
            #expect(((supervisord["respawn"] as? [String: Any])?["count"] as? Int) == 2)
        }
        let markdown = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(markdown.contains("| 2 | "))
        #expect(markdown.contains("| 5 | "))
        #expect(markdown.contains("## Beside supervisord"))
        #expect(markdown.contains("Window 2 s per step, from 1.0 s after every agent was READY"))
        let svg = try String(contentsOfFile: out + "/report.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        // Every step's scratch data dir (the lead's, the copies of the binary) is gone.
        let left = try FileManager.default.contentsOfDirectory(atPath: scratch).filter { $0.hasPrefix("pimesh-bench.") }
        #expect(left.isEmpty, "left behind: \(left)")
    }

    /// `--lead`: the steps' swarms join a lead that already runs; its figures are measured, its
    /// own agents take no task, and it runs on afterwards with the bench's agents gone.
    @Test func aRunningLeadIsMeasuredWithoutTakingWorkFromItsAgents() throws {
        let scratch = LeadProcess.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let dataDir = scratch + "/lead"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let lead = try LeadProcess(dataDir: dataDir)
        defer { lead.stopOrphanedAgents() }
        _ = try lead.waitReady()
        let client = try lead.client()
        func count(_ field: String = "ready") throws -> Int {
            let status = try JSONSerialization.jsonObject(with: Data(client.get("/v1/status"))) as? [String: Any]
            return (status?["agents"] as? [String: Any])?[field] as? Int ?? -1
        }
        func ready() throws -> Int { try count() }
        #expect(try ready() == 0)

        // A bench killed with SIGKILL mid-step: its agents offer only pimesh-bench (none of the
        // node's tasks can go to them), its swarm stops by itself once the bench is gone (the
        // agents leave), and the next run removes what it left.
        let killed = Process()
        killed.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        killed.arguments = ["bench", "run", "--lead", dataDir, "--agents", "3", "--settle", "0s", "--duration", "10m", "--out", scratch + "/killed", "--scratch", scratch]
        killed.standardOutput = FileHandle.nullDevice
        killed.standardError = FileHandle.nullDevice
        try killed.run()
        #expect(eventually(timeout: 60) { (try? ready()) == 3 })
        let borrowed = try client.agents().agents
        #expect(borrowed.count == 3 && borrowed.allSatisfy { $0.capabilities == ["pimesh-bench"] }, "\(borrowed.map(\.capabilities))")
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        let leadPID = lead.process.processIdentifier
        #expect(eventually(timeout: 30) { Self.processes(runningFrom: dataDir).allSatisfy { $0 == leadPID } }, "the swarm outlived the bench")
        #expect(eventually(timeout: 10) { (try? client.agents().agents.allSatisfy { $0.health?.condition == "left" }) == true })

        let out = scratch + "/report"
        let run = try runPimesh(
            ["bench", "run", "--lead", dataDir, "--agents", "3", "--settle", "0s", "--duration", "2s", "--out", out, "--scratch", scratch],
            timeout: 120)
        #expect(run.status == 0, "\(run.output)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as? [String: Any]
        let report = try #require(json)
        let running = try #require(report["running_lead"] as? [String: Any])
        #expect(running["pid"] as? Int == Int(lead.process.processIdentifier))
        #expect(running["data_dir"] as? String == dataDir)
        #expect(running["agents_before"] as? Int == 0)
        #expect(running["leftovers_removed"] as? Int == 3)
        let step = try #require((report["steps"] as? [[String: Any]])?.first)
        #expect(step["agents"] as? Int == 3)
        #expect(step["supervised_agents"] as? Int == 0)
        #expect(step["tasks"] == nil, "no task goes to a running lead")
        #expect(((step["lead"] as? [String: Any])?["pss_bytes"] as? Int ?? 0) > 1 << 20)
        #expect(((step["heartbeats"] as? [String: Any])?["accepted"] as? Int ?? 0) >= 3 * 4)
        let detection = try #require(step["detection"] as? [String: Any])
        #expect((detection["exit_seen"] as? [String: Any])?["count"] as? Int == 0)
        #expect((detection["phi_suspicion"] as? [String: Any])?["count"] as? Int == 0, "no agent is killed on a running lead")
        let markdown = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
        #expect(markdown.contains("Measured on a running lead (pid \(lead.process.processIdentifier)"))
        // The lead runs on, without the bench's agents (removed, not only gone: its registry
        // would otherwise fill run after run), and nothing of the bench is in its data dir.
        #expect(lead.process.isRunning)
        #expect(try ready() == 0)
        #expect(try count("total") == 0)
        let leftInDataDir = try FileManager.default.contentsOfDirectory(atPath: dataDir).filter { $0.hasPrefix("swarm-") }
        #expect(leftInDataDir.isEmpty, "\(leftInDataDir)")

        let refused = try runPimesh(["bench", "run", "--lead", dataDir, "--tasks", "5", "--out", out])
        #expect(refused.status != 0 && refused.output.contains("--lead: no task is submitted to a running lead"), "\(refused.output)")
        let killing = try runPimesh(["bench", "run", "--lead", dataDir, "--kills", "2", "--out", out])
        #expect(killing.status != 0 && killing.output.contains("--lead: no agent is killed on a running lead"), "\(killing.output)")
        // Found before any load: a step that does not fit the registry, a report that cannot be written.
        let tooMany = try runPimesh(["bench", "run", "--lead", dataDir, "--agents", "2000", "--out", out, "--scratch", scratch])
        #expect(tooMany.status != 0 && tooMany.output.contains("takes 1024 (agents.max_registered): a step of 2000 does not fit"), "\(tooMany.output)")
        let unwritable = try runPimesh(["bench", "run", "--lead", dataDir, "--agents", "1", "--out", out + "/report.json", "--scratch", scratch])
        #expect(unwritable.status != 0 && unwritable.output.contains("not a directory this user can write the report into"), "\(unwritable.output)")
        #expect(try count("total") == 0)
        let nothing = try runPimesh(["bench", "run", "--lead", scratch + "/none", "--out", out])
        #expect(nothing.status != 0 && nothing.output.contains("is not a directory"), "\(nothing.output)")
        let empty = scratch + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let noLead = try runPimesh(["bench", "run", "--lead", empty, "--agents", "1", "--settle", "0s", "--duration", "1s", "--out", out, "--scratch", scratch])
        #expect(noLead.status != 0 && noLead.output.contains("--lead \(empty): no lead is running with data dir \(empty)"), "\(noLead.output)")
        #expect(!noLead.output.contains("pimesh run"), "an error must never suggest starting a second lead")
    }

    @Test func badArgumentsNameTheOptionAndStartNothing() throws {
        let cases: [([String], String)] = [
            (["--agents", "10,abc"], "--agents: 'abc' is not a number of agents from 1 to 10000"),
            (["--agents", "0"], "--agents: '0' is not a number of agents from 1 to 10000"),
            (["--agents", "1,2,3,4,5,6,7,8,9"], "--agents: at most 8 steps, not 9"),
            (["--duration", "0s"], "--duration: '0s' is not a duration from 1s to 1h"),
            (["--duration", "twenty"], "--duration: 'twenty' is not a duration"),
            (["--settle=-1s"], "--settle: '-1s' is not a duration from 0s to 10m"),
            (["--settle", "11m"], "--settle: '11m' is not a duration from 0s to 10m"),
            (["--compare", "runit"], "--compare: 'runit' is not supported; supervisord and systemd-run are"),
            (["--compare", "supervisord,upstart"], "--compare: 'upstart' is not supported; supervisord and systemd-run are"),
            (["--kills", "101"], "--kills must be 0…100, not 101"),
        ]
        for (arguments, message) in cases {
            let run = try runPimesh(["bench", "run"] + arguments + ["--out", "/nonexistent/never-made"])
            #expect(run.status != 0, "\(arguments)")
            #expect(run.output.contains(message), "\(arguments): \(run.output)")
        }
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/never-made"))
    }

    /// Where systemd is not PID 1 (CI; not run on a machine that booted with systemd), asking
    /// for it fails at once with the reason, before a lead is started.
    @Test(.enabled(if: !FileManager.default.fileExists(atPath: "/run/systemd/system")))
    func systemdRunIsRefusedWhereSystemdIsNotPID1() throws {
        let scratch = LeadProcess.scratchDirectory()
        let run = try runPimesh([
            "bench", "run", "--agents", "1", "--settle", "0s", "--duration", "1s", "--compare", "systemd-run", "--out", scratch + "/out", "--scratch", scratch,
        ])
        #expect(run.status != 0)
        #expect(run.output.contains("--compare systemd-run: systemd is not PID 1 here"), "\(run.output)")
        let left = try FileManager.default.contentsOfDirectory(atPath: scratch).filter { $0.hasPrefix("pimesh-bench.") }
        #expect(left.isEmpty, "a step started: \(left)")
    }

    /// systemd as PID 1 of namespaces this test makes (scripts/systemd-container.sh): the bench
    /// starts its services with systemd-run, measures PID 1, kills services and times their
    /// restart (six times each of two units: more than systemd's default start limit allows),
    /// and leaves no unit, process or cgroup behind; nor when it is stopped in the middle.
    @Test func aRunBesideSystemdRunMeasuresPID1AndStopsItsServices() throws {
        let scratch = LeadProcess.scratchDirectory()
        let root = scratch + "/root"
        let script = LeadProcess.repositoryRoot + "/scripts/systemd-container.sh"
        let binaryDirectory = URL(fileURLWithPath: LeadProcess.binary).resolvingSymlinksInPath().deletingLastPathComponent().path
        let started = try runSpawned(script, ["start", root, binaryDirectory])
        try #require(started.status == 0, "\(started.output)")
        let systemd = started.output.split(separator: "\n").last.map(String.init) ?? ""
        defer { _ = try? runSpawned(script, ["stop", systemd, root]) }
        let inside = { (arguments: [String]) in try runProcess("/usr/bin/nsenter", ["-t", systemd, "-a", "-r", "-w"] + arguments) }

        let bench = try inside([
            binaryDirectory + "/pimesh", "bench", "run", "--agents", "2", "--settle", "0s", "--duration", "2s", "--kills", "12", "--attached-kills", "0",
            "--tasks", "10", "--compare", "systemd-run", "--scratch", "/var/tmp", "--out", "/var/tmp/out",
        ])
        #expect(bench.status == 0, "\(bench.output)")
        #expect(bench.output.contains("systemd (PID 1) PSS"), "\(bench.output)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/var/tmp/out/report.json")))
        let steps = try #require((json as? [String: Any])?["steps"] as? [[String: Any]])
        let step = try #require(steps.first)
        let compared = try #require(step["systemd"] as? [String: Any], "\(step)")
        #expect(compared["programs"] as? Int == 2)
        let version = compared["version"] as? String ?? ""
        #expect(!version.isEmpty && version.allSatisfy { $0.isNumber }, "\(version)")
        let process = try #require(compared["process"] as? [String: Any])
        #expect((process["pss_bytes"] as? Int ?? 0) > 1 << 20, "PID 1's PSS was read: \(process)")
        let respawn = try #require(compared["respawn"] as? [String: Any])
        #expect(respawn["count"] as? Int == 12)
        // systemd waits RestartSec (100 ms by default) before it starts the replacement.
        #expect((respawn["p50_ms"] as? Double ?? 0) >= 100, "\(respawn)")
        #expect((respawn["max_ms"] as? Double ?? .infinity) < 5_000, "\(respawn)")
        let markdown = try String(contentsOfFile: root + "/var/tmp/out/report.md", encoding: .utf8)
        #expect(markdown.contains("## Beside systemd"))

        let leftBehind = {
            let units = try inside(["systemctl", "list-units", "--all", "--no-legend", "--plain", "pimesh_bench_*"])
            #expect(units.status == 0 && units.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "units left: \(units.output)")
            let sleepers = try inside(["pgrep", "-x", "sleep"])
            #expect(sleepers.output.isEmpty, "processes left: \(sleepers.output)")
            let slices = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(systemd)/root/sys/fs/cgroup").filter { $0.hasPrefix("pimesh_bench_") }
            #expect(slices.isEmpty, "cgroups left: \(slices)")
        }
        try leftBehind()

        // SIGTERM while the services run (its window is a minute): the bench stops them.
        let interrupted = try inside([
            "timeout", "-s", "TERM", "8", binaryDirectory + "/pimesh", "bench", "run", "--agents", "3", "--settle", "0s", "--duration", "60s",
            "--compare", "systemd-run", "--scratch", "/var/tmp", "--out", "/var/tmp/interrupted",
        ])
        #expect(interrupted.status != 0 && interrupted.output.contains("interrupted: stopped everything it started"), "\(interrupted.output)")
        try leftBehind()
    }

    @Test func aSIGTERMStopsTheLeadAndSwarmItStarted() throws {
        let scratch = LeadProcess.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        process.arguments = ["bench", "run", "--agents", "3", "--duration", "10m", "--out", scratch + "/report", "--scratch", scratch]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Wait until the lead of the step has agents (a status answered by its data dir).
        var dataDir: String?
        #expect(eventually(timeout: 60) {
            dataDir = try FileManager.default.contentsOfDirectory(atPath: scratch).first { $0.hasPrefix("pimesh-bench.") }.map { scratch + "/" + $0 }
            guard let dataDir, let status = try? LeadClient(dataDir: dataDir).get("/v1/status") else { return false }
            // The 3 supervised agents and the swarm's 3.
            return (try? APICoding.decode(StatusReport.self, from: status).agents.ready) ?? 0 >= 6
        })
        let started = try #require(dataDir)
        #expect(eventually(timeout: 10) { Self.processes(runningFrom: started).count >= 5 }, "the lead, the swarm and the supervised agents")
        kill(process.processIdentifier, SIGTERM)
        #expect(eventually(timeout: 60) { !process.isRunning }, "the bench stops within its grace")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 130, "\(text)")
        #expect(text.contains("interrupted: stopped everything it started"))
        #expect(eventually(timeout: 15) { Self.processes(runningFrom: started).isEmpty }, "still running: \(Self.processes(runningFrom: started))")
        #expect(!FileManager.default.fileExists(atPath: scratch + "/report/report.json"))
    }

    /// Processes that run a private copy the bench made in `directory` (the lead, the supervised
    /// agents) or name it on their command line (the swarm).
    static func processes(runningFrom directory: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = Int32(entry) else { return nil }
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/exe")) ?? ""
            let commandLine = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(entry)/cmdline"))).map {
                String(decoding: $0.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            } ?? ""
            return exe.hasPrefix(directory + "/") || commandLine.contains(directory) ? pid : nil
        }
    }
}
