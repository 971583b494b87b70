import Glibc
import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshRuntime
import PimeshSystem

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Seed 002's DiRT drills on this node's own supervised agents (docs/incidents.md).",
        discussion: "Drills hurt agents on purpose: each asks for --yes, is audited, and reports what the lead did against the seed's SLO.",
        subcommands: [Kill.self, Hang.self, CorruptSnapshot.self, Siege.self, Load.self])

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kill", abstract: "SIGKILL N running supervised agents at once (DIRT01) and time detection, the incident, and recovery.",
            discussion: """
                The lead picks the agents at random (or takes --agent NAME, repeatable), kills them, and \
                waits until each heartbeats again or --timeout passes. The SLO is seed 002's: 60 s for one \
                agent, 120 s for more (the seed's own run took about 40 s; this project's goal is under 2 s). \
                Exit status 1 when it was not met.
                """)

        @OptionGroup var options: ClientOptions

        @Option(name: .long, help: "How many agents to kill (1…1000); default 1 unless --agent names them.")
        var count: Int?

        @Option(name: .customLong("agent"), help: "Kill this agent (repeatable) instead of a random pick.")
        var agents: [String] = []

        @Option(name: .long, help: "Seconds to wait for recovery (1…600).")
        var timeout = 120

        @Flag(name: .long, help: "Yes, kill them.")
        var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("a drill kills agents on purpose: add --yes") }
            if let count, !(1...1000).contains(count) { throw ValidationError("--count must be 1…1000") }
            if count != nil && !agents.isEmpty { throw ValidationError("give --count or --agent, not both") }
            guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1…600 seconds") }
        }

        func run() async throws {
            struct Request: Encodable {
                var confirm = true
                var timeoutS: Int
                var count: Int?
                var agents: [String]?
            }
            let raw: [UInt8]
            do {
                let body = try APICoding.encode(Request(timeoutS: timeout, count: count, agents: agents.isEmpty ? nil : agents))
                raw = try options.client().withTimeout(milliseconds: (timeout + 15) * 1000).post("/v1/drills/kill", json: body)
            } catch {
                throw CLIFailure.report(error)
            }
            if options.json { print(String(decoding: raw, as: UTF8.self)) }
            let answer = try APICoding.decode(KillDrill.Result.self, from: raw)
            if !options.json {
                var table = TextTable(["AGENT", "EXIT SEEN", "HEARTBEATING AGAIN"])
                for name in answer.agents {
                    table.add([name, answer.detectedMs[name].map { "\($0) ms" } ?? "not seen", answer.recoveredMs[name].map { "\($0) ms" } ?? "not yet"])
                }
                print(table.render())
                print("incidents: \(answer.incidents.isEmpty ? "none" : answer.incidents.joined(separator: ", "))"
                    + (answer.mitigatedMs.map { ", mitigated after \($0) ms" } ?? ""))
                let all = answer.allRecoveredMs.map { "all recovered after \($0) ms" } ?? "not all recovered"
                print("\(answer.met ? "met" : "MISSED"): \(all), SLO \(answer.sloMs / 1000) s (seed 002's run: about 40 s)")
            }
            if !answer.met { throw ExitCode(1) }
        }
    }

    /// Posts a fault drill and prints its report; exit status 1 when the SLO was missed.
    static func post(_ path: String, body: [UInt8], options: ClientOptions, waitSeconds: Int) throws {
        let raw: [UInt8]
        do {
            // The lead answers when the drill is over: the fault, then up to the timeout.
            raw = try options.client().withTimeout(milliseconds: (waitSeconds + 15) * 1000).post(path, json: body)
        } catch {
            throw CLIFailure.report(error)
        }
        let report = try APICoding.decode(FaultDrill.Report.self, from: raw)
        if options.json {
            print(String(decoding: raw, as: UTF8.self))
        } else {
            func ms(_ value: Int64?) -> String { value.map { "\($0) ms" } ?? "—" }
            print("\(report.drill) on \(report.target): detected \(ms(report.detectedMs)), mitigated \(ms(report.mitigatedMs)), recovered \(ms(report.recoveredMs))")
            print("incidents: \(report.incidents.isEmpty ? "none" : report.incidents.joined(separator: ", "))")
            for line in report.playbooks { print("playbook \(line)") }
            for note in report.notes { print("note: \(note)") }
            print("\(report.met ? "met" : "MISSED"): SLO \(report.sloMs / 1000) s (\(report.seedFigure))")
        }
        if !report.met { throw ExitCode(1) }
    }

    struct Hang: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hang", abstract: "SIGSTOP one running supervised agent behind the lead's back and time how it is found and restarted.",
            discussion: "The lead sees it go silent, kills it and starts it again; SLO 60 s (seed 002's single agent). Exit status 1 when missed.")
        @OptionGroup var options: ClientOptions
        @Option(name: .customLong("agent"), help: "This agent (default: one picked at random).")
        var agent: String?
        @Option(name: .long, help: "Seconds to wait for recovery (1…600).")
        var timeout = 120
        @Flag(name: .long, help: "Yes, hang it.")
        var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("a drill hurts an agent on purpose: add --yes") }
            guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1…600 seconds") }
        }

        func run() async throws {
            struct Request: Encodable {
                var confirm = true
                var timeoutS: Int
                var agent: String?
            }
            try DrillCommand.post("/v1/drills/hang", body: try APICoding.encode(Request(timeoutS: timeout, agent: agent)), options: options, waitSeconds: timeout)
        }
    }

    struct CorruptSnapshot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "corrupt-snapshot",
            abstract: "Damage the newest snapshot in the spool (DIRT02) and time detection, quarantine and a fresh snapshot.",
            discussion: """
                Overwrites 16 bytes in the middle of the newest compressed snapshot (taking one first when the \
                spool is empty), then verifies the spool as the lead does after each snapshot. Seed 002 detected \
                corruption in 0.2 s: the drill is met when detection takes at most 200 ms and the playbook has \
                quarantined the file and taken a fresh snapshot within 60 s.
                """)
        @OptionGroup var options: ClientOptions
        @Option(name: .long, help: "Seconds to wait for recovery (1…600).")
        var timeout = 120
        @Flag(name: .long, help: "Yes, damage it.")
        var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("a drill damages a snapshot on purpose: add --yes") }
            guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1…600 seconds") }
        }

        func run() async throws {
            struct Request: Encodable {
                var confirm = true
                var timeoutS: Int
            }
            try DrillCommand.post("/v1/drills/corrupt-snapshot", body: try APICoding.encode(Request(timeoutS: timeout)), options: options, waitSeconds: timeout)
        }
    }

    struct Siege: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "siege", abstract: "Load the node (busy threads, touched memory) from a child of the lead (DIRT03) and check it copes.",
            discussion: """
                Met when no agent fails during the siege and, within 60 s after the load stops, the node score \
                is back at or under 800, every agent is healthy and the degradation level is FULL. The report \
                gives the peak score, the worst level and any incidents the siege opened.
                """)
        @OptionGroup var options: ClientOptions
        @Option(name: .long, help: "Busy threads (0…64).")
        var cpu = 1
        @Option(name: .long, help: "MiB of memory to allocate and touch (0…8192).")
        var memory = 0
        @Option(name: .long, help: "How long the load lasts (1…600 s).")
        var seconds = 10
        @Option(name: .long, help: "Seconds to wait for recovery after the load (1…600).")
        var timeout = 120
        @Flag(name: .long, help: "Yes, load the node.")
        var yes = false

        func validate() throws {
            guard yes else { throw ValidationError("a drill loads the node on purpose: add --yes") }
            guard (0...64).contains(cpu) else { throw ValidationError("--cpu must be 0…64") }
            guard (0...8192).contains(memory) else { throw ValidationError("--memory must be 0…8192 MiB") }
            guard (1...600).contains(seconds), (1...600).contains(timeout) else { throw ValidationError("--seconds and --timeout must be 1…600") }
        }

        func run() async throws {
            struct Request: Encodable {
                var confirm = true
                var cpu: Int
                var memoryMb: Int
                var seconds: Int
                var timeoutS: Int
            }
            try DrillCommand.post(
                "/v1/drills/siege", body: try APICoding.encode(Request(cpu: cpu, memoryMb: memory, seconds: seconds, timeoutS: timeout)),
                options: options, waitSeconds: seconds + timeout)
        }
    }

    /// The siege's load, run by the lead as its child.
    struct Load: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "load", abstract: "The load of `drill siege` (the lead runs it).", shouldDisplay: false)
        @Option(name: .long) var cpu = 1
        @Option(name: .customLong("memory-mb")) var memoryMB = 0
        @Option(name: .long) var seconds = 10

        func validate() throws {
            guard (0...64).contains(cpu), (0...8192).contains(memoryMB), (1...600).contains(seconds) else {
                throw ValidationError("--cpu 0…64, --memory-mb 0…8192, --seconds 1…600")
            }
        }

        func run() throws {
            let end = Clock.monotonicNow() + .seconds(Int64(seconds))
            if memoryMB > 0, let memory = malloc(memoryMB << 20) {
                let page = max(4096, sysconf(Int32(_SC_PAGESIZE)))
                for offset in stride(from: 0, to: memoryMB << 20, by: page) { memory.storeBytes(of: UInt8(1), toByteOffset: offset, as: UInt8.self) }
            }
            var threads: [pthread_t] = []
            for _ in 0..<max(0, cpu - 1) {
                var thread = pthread_t()
                let seconds = UnsafeMutableRawPointer(bitPattern: seconds)
                if pthread_create(&thread, nil, { argument in
                    let end = Clock.monotonicNow() + .seconds(Int64(Int(bitPattern: argument)))
                    var spin: UInt64 = 0
                    while Clock.monotonicNow() < end { spin &+= 1 }
                    return nil
                }, seconds) == 0 { threads.append(thread) }
            }
            var spin: UInt64 = 0
            while Clock.monotonicNow() < end {
                if cpu > 0 { spin &+= 1 } else { usleep(50_000) }
            }
            for thread in threads { pthread_join(thread, nil) }
        }
    }
}
