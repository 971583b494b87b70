import ArgumentParser
import PimeshAgent
import PimeshCore
import PimeshRuntime

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Seed 002's DiRT drills on this node's own supervised agents (docs/incidents.md).",
        discussion: "Drills hurt agents on purpose: each asks for --yes, is audited, and reports what the lead did against the seed's SLO.",
        subcommands: [Kill.self])

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "SIGKILL N running supervised agents at once (DIRT01) and time detection, the incident, and recovery.",
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
                raw = try options.client().post("/v1/drills/kill", json: body)
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
}
