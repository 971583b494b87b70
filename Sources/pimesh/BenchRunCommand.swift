import ArgumentParser
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSim
import PimeshSystem
import UnixSignals

extension BenchCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "The on-device load benchmark: a lead of its own under 10, 100, 1,000 agents that take work.",
            discussion: """
                For each number in --agents, starts a lead (from a private copy of this binary, with a \
                scratch data dir in --scratch, whose storage is the one measured), one `pimesh swarm` whose \
                agents take work as datagrams, and 3 supervised `pimesh sim-agent` processes. Once every agent \
                is READY, and --settle later (past the lead's next trim of idle code, which drops what \
                the bench's own status calls brought in), it measures the lead for --duration (the step's lead \
                has room for every agent and admits all of them at once, where the field default is a \
                burst of 200 and then 20 a second): PSS and private memory \
                (smaps_rollup), CPU (user + system), storage writes (write_bytes), heartbeats accepted and \
                dropped, and node impedance. Then it submits tasks (submit → result percentiles), kills a \
                supervised agent --kills times (exit seen, heartbeating again) and an attached agent \
                --attached-kills times (phi suspicion). Latency percentiles come from an HdrHistogram. \
                --compare supervisord runs as many `sleep` programs under supervisord (from PATH: \
                apt-get install supervisor, or pip install supervisor), on a private socket, in the same \
                window, and kills its programs as often, for its memory, CPU and respawn time beside pimesh's. \
                --compare systemd-run does the same with transient services under systemd where it is PID 1 \
                (as root; `systemd-run --unit=pimesh_bench_PID_STEP_NNNNN.service --slice=pimesh_bench_PID_STEP.slice \
                -p Restart=always -p StartLimitIntervalSec=0 /bin/sleep infinity`), measuring PID 1; each step's \
                slice is stopped when the step ends, Ctrl-C included; if the bench itself is killed with kill -9, \
                its services run on until `systemctl stop 'pimesh_bench_*.slice'`. \
                --compare supervisord,systemd-run measures both. \
                Writes report.json, report.md and report.svg into --out, each naming the machine (CPU, cores, \
                RAM, kernel, storage). --check exits 1 when a check fails: per-agent private memory above \
                4,096 bytes (between steps at least 500 agents apart) or a heartbeat dropped in a window. \
                Needs root for the supervised agents. Interrupting it stops everything it started. \
                --lead DIR measures a lead that already runs on data dir DIR instead (run it as the lead's \
                user or root): each step's swarm joins that lead (its identities kept in the scratch dir), and \
                every agent the bench registered is removed from the lead when the step ends; the figures \
                include what the lead held before (the report says how many agents). The bench's agents offer \
                only the capability pimesh-bench, so that none of the node's tasks go to them (an ask or \
                broadcast to every agent during a step includes them); no task is submitted and no agent is \
                killed, since the node's incidents, breakers and health level would count it (--tasks, \
                --kills and --attached-kills are refused with it). A swarm stops when the bench is gone, even \
                after kill -9, and the next run removes the agents a killed bench left. The lead's \
                agents.max_registered must have room for the largest step beside the agents it holds \
                (checked first); while a step runs, that much less is free for new agents of the node.
                """
        )

        @Option(help: "Agents per step, comma-separated (each 1…10000, at most 8 steps).")
        var agents: String = "10,100,1000"

        @Option(help: "Measurement window per step: 20s, 2m, 1500ms or seconds (1 s…1 h).")
        var duration: String = "20s"

        @Option(
            help: """
                From READY to the window: 21s by default, past the lead's next trim of idle code (every 15 s, \
                looked at every 5 s), which drops the code the bench's own status calls brought in. 0s measures at once.
                """)
        var settle: String = "\(Int(LoadBenchmark.defaultSettleSeconds))s"

        @Option(help: "Directory for report.json, report.md and report.svg (made if missing).")
        var out: String = "pimesh-bench"

        @Option(help: "Also measure other supervisors in the same run: supervisord, systemd-run, or both (comma-separated).")
        var compare: String?

        static let comparable = ["supervisord", "systemd-run"]
        var compared: [String] { compare.map { $0.split(separator: ",").map { String($0.filter { $0 != " " }) } } ?? [] }

        @Option(help: "kill -9 trials of a supervised agent per step (0…100; default 5; none with --lead).")
        var kills: Int?

        @Option(help: "kill -9 trials of an attached agent per step, for phi detection (0…20; default 3; none with --lead).")
        var attachedKills: Int?

        @Option(help: "Tasks per step (0…100000; default: the step's agents, at least 100 and at most 1,000).")
        var tasks: Int?

        @Option(help: "Where each step's scratch data dir is made; its storage is the one measured.")
        var scratch: String = "/var/tmp"

        @Option(help: ArgumentHelp("Measure the lead already running on this data dir instead of one of the bench's own.", valueName: "data-dir"))
        var lead: String?

        @Flag(help: "Print report.json on stdout instead of the summary.")
        var json = false

        @Flag(help: "Exit 1 when a check in the report fails.")
        var check = false

        var steps: [Int] { agents.split(separator: ",").compactMap { Int($0.filter { $0 != " " }) } }

        @_optimize(size)  // cold: once per command line (the 25 MB budget)
        func validate() throws {
            let parts = agents.split(separator: ",", omittingEmptySubsequences: false)
            for part in parts {
                guard let count = Int(part.filter { $0 != " " }), (1...10_000).contains(count) else {
                    throw ValidationError("--agents: '\(part)' is not a number of agents from 1 to 10000")
                }
            }
            guard (1...8).contains(parts.count) else { throw ValidationError("--agents: at most 8 steps, not \(parts.count)") }
            guard let seconds = Self.seconds(duration), (1...3600).contains(seconds) else {
                throw ValidationError("--duration: '\(duration)' is not a duration from 1s to 1h (20s, 2m, 1500ms)")
            }
            guard let settleSeconds = Self.seconds(settle), (0...600).contains(settleSeconds) else {
                throw ValidationError("--settle: '\(settle)' is not a duration from 0s to 10m (21s, 1m, 500ms)")
            }
            if let unknown = compared.first(where: { !Self.comparable.contains($0) }) {
                throw ValidationError("--compare: '\(unknown)' is not supported; supervisord and systemd-run are")
            }
            if compare != nil, compared.isEmpty { throw ValidationError("--compare: name supervisord, systemd-run or both") }
            if let kills, !(0...100).contains(kills) { throw ValidationError("--kills must be 0…100, not \(kills)") }
            if let attachedKills, !(0...20).contains(attachedKills) { throw ValidationError("--attached-kills must be 0…20, not \(attachedKills)") }
            if let tasks, !(0...100_000).contains(tasks) { throw ValidationError("--tasks must be 0…100000, not \(tasks)") }
            guard !out.isEmpty else { throw ValidationError("--out must name a directory") }
            if let lead {
                var info = stat()
                guard stat(lead, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                    throw ValidationError("--lead: '\(lead)' is not a directory (a running lead's data dir)")
                }
                if tasks.map({ $0 > 0 }) == true {
                    throw ValidationError("--lead: no task is submitted to a running lead (its own agents would take them); drop --tasks")
                }
                if (kills ?? 0) > 0 || (attachedKills ?? 0) > 0 {
                    throw ValidationError("--lead: no agent is killed on a running lead (its incidents, breakers and health level would count it); drop --kills and --attached-kills")
                }
            }
            var info = stat()
            guard scratch.hasPrefix("/"), stat(scratch, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw ValidationError("--scratch: '\(scratch)' is not an absolute path to an existing directory")
            }
        }

        static func seconds(_ text: String) -> Double? {
            let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
            for (suffix, factor) in units where text.hasSuffix(suffix) {
                return Double(text.dropLast(suffix.count)).map { $0 * factor }
            }
            return Double(text)
        }

        func run() async throws {
            do {
                try FileIO.makeDirectories(out, mode: 0o755)
                // Checked before the run, not found out once minutes of load (on a running lead, too) were spent.
                var info = stat()
                guard stat(out, &info) == 0, info.st_mode & S_IFMT == S_IFDIR, access(out, W_OK | X_OK) == 0 else {
                    throw CLIFailure("--out \(out): not a directory this user can write the report into")
                }
                let binary = try Self.ownExecutable()
                let settings = LoadBenchmark.Settings(
                    agentSteps: steps, windowSeconds: Self.seconds(duration)!, settleSeconds: Self.seconds(settle)!,
                    kills: lead == nil ? kills ?? 5 : 0, attachedKills: lead == nil ? attachedKills ?? 3 : 0,
                    tasks: tasks, compareSupervisord: compared.contains("supervisord"),
                    compareSystemd: compared.contains("systemd-run"), scratchParent: scratch, binary: binary, runningLead: lead)
                let onTerminal = isatty(STDERR_FILENO) == 1
                let benchmark = LoadBenchmark(settings: settings) { message in
                    if onTerminal {
                        FileHandleStderr.write("\r\u{1B}[K" + message)
                    } else if message.hasSuffix(": done") {
                        FileHandleStderr.write(message + "\n")
                    }
                }
                // Ctrl-C, SIGTERM or a dropped SSH session cancels the run, which stops the leads,
                // swarms and supervisord it started. Trapped before anything starts.
                let signalSequence = await UnixSignalsSequence(trapping: .sigint, .sigterm, .sighup)
                let work = Task { try await benchmark.run() }
                let signals = Task {
                    for await _ in signalSequence {
                        work.cancel()
                        break
                    }
                }
                defer { signals.cancel() }
                let report: BenchReport
                do {
                    report = try await work.value
                } catch is CancellationError {
                    throw CLIFailure("interrupted: stopped everything it started", exitCode: 130)
                }
                if onTerminal { FileHandleStderr.write("\r\u{1B}[K") }
                let json = try APICoding.encode(report, pretty: true)
                try FileIO.writeAtomically(path: out + "/report.json", bytes: json + [UInt8(ascii: "\n")])
                try FileIO.writeAtomically(path: out + "/report.md", bytes: Array(report.markdown().utf8))
                try FileIO.writeAtomically(path: out + "/report.svg", bytes: Array(report.svg().utf8))
                if self.json {
                    print(String(decoding: json, as: UTF8.self))
                } else {
                    print(Self.summary(report))
                    print("report: \(out)/report.md, \(out)/report.json, \(out)/report.svg")
                }
                if check, let failed = report.checks.first(where: { !$0.passed }) {
                    throw CLIFailure("check failed: \(failed.name) = \(Int(failed.value)) (limit \(Int(failed.limit)))")
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }

        static func ownExecutable() throws -> String {
            var buffer = [CChar](repeating: 0, count: 4096)
            let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
            guard length > 0 else { throw CLIFailure("cannot find this binary (/proc/self/exe)") }
            return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        @_optimize(size)  // cold: once at the end of a bench run (the 25 MB budget)
        static func summary(_ report: BenchReport) -> String {
            var lines = [
                "\(report.machine.cpuModel), \(report.machine.cores) cores, \(Format.megabytes(report.machine.memoryBytes)); "
                    + "\(report.machine.storage); \(DecimalText.format(report.windowSeconds, places: 0)) s windows"
            ]
            for step in report.steps {
                var line = "\(step.agents) agents: lead PSS \(Format.megabytes(step.lead.pssBytes)), "
                line += "private \(Format.megabytes(step.lead.privateBytes)), CPU \(DecimalText.format(step.lead.cpuPercentOfCore, places: 2)) %, "
                line += "heartbeats \(step.heartbeats.accepted) accepted / \(step.heartbeats.dropped) dropped"
                if let tasks = step.tasks {
                    line += ", tasks p99 \(DecimalText.format(tasks.submitToResult.p99Ms)) ms"
                }
                if step.detection.phiSuspicion.count > 0 {
                    line += ", phi p99 \(DecimalText.format(step.detection.phiSuspicion.p99Ms)) ms"
                }
                for (name, other) in [("supervisord", step.supervisord), ("systemd (PID 1)", step.systemd)] {
                    guard let other else { continue }
                    line += "; \(name) PSS \(Format.megabytes(other.process.pssBytes)), "
                    line += "CPU \(DecimalText.format(other.process.cpuPercentOfCore, places: 2)) %"
                }
                lines.append(line)
            }
            if let perAgent = report.perAgentPrivateBytes { lines.append("per-agent private memory: \(perAgent) bytes") }
            for check in report.checks where !check.passed {
                lines.append("FAIL \(check.name) = \(Int(check.value)) (limit \(Int(check.limit)))")
            }
            return lines.joined(separator: "\n")
        }
    }
}
