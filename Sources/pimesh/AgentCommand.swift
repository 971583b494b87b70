import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshSim
import PimeshRuntime
import PimeshSystem

/// `pimesh agent start|stop|restart`: per-agent control, as `systemctl` and `supervisorctl`
/// give it. Run with no verb (how manifests of round 1 say `"args": ["agent"]`), it is still
/// the simulated agent, with a warning that `pimesh sim-agent` is its name now.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Stop, start, restart or roll back supervised agents.",
        discussion: """
            Each verb takes agent names (or unique id prefixes), or --all, or --capability to \
            select the supervised agents that have it. `stop` sends SIGTERM, then SIGKILL after \
            the manifest's stop_timeout_s (default supervision.stop_timeout_s); a stopped agent \
            stays down, across lead restarts, until `start`, and does not count against the \
            node's health. `restart` is graceful (SIGTERM, then a start); `pimesh heal` is the \
            hard one (SIGKILL at once). Attached agents are run by something else: use its own \
            runtime (podman stop NAME). `rollback` puts back the manifest an agent ran with \
            before its last change (and restarts it with that); the file in agents.d is left \
            as it is and the rollback holds until that file is edited.
            """,
        subcommands: [Stop.self, Start.self, Restart.self, Rollback.self, LegacySimulatedAgent.self],
        defaultSubcommand: LegacySimulatedAgent.self
    )

    struct Selection: ParsableArguments {
        @Argument(help: "Agent names or ids.")
        var names: [String] = []

        @Flag(name: .long, help: "Every supervised agent.")
        var all = false

        @Option(name: .long, help: "The supervised agents with this capability.")
        var capability: String?

        func validate() throws {
            let ways = (names.isEmpty ? 0 : 1) + (all ? 1 : 0) + (capability == nil ? 0 : 1)
            guard ways == 1 else { throw ValidationError("name the agents, or give --all or --capability, one of them") }
        }

        /// The agents to act on, as the path names them and as the output does: as given, or the
        /// supervised agents the selector matches by whole id (a name like `cafe` can also be the
        /// start of another agent's id, and the lead refuses to guess which was meant).
        func resolve(_ client: LeadClient) throws -> [(path: String, name: String)] {
            guard names.isEmpty else { return names.map { ($0, $0) } }
            let supervised = try client.agents().agents.filter { $0.supervision?.mode == "supervised" }
            let chosen = supervised.filter { capability == nil || $0.capabilities.contains(capability!) }.sorted { $0.name < $1.name }
                .map { (path: $0.id.description, name: $0.name) }
            guard !chosen.isEmpty else {
                throw CLIFailure(capability.map { "no supervised agent has the capability \"\($0)\"" } ?? "there are no supervised agents")
            }
            return chosen
        }
    }

    /// `act`, with its failures reported as every command reports them.
    static func run(_ verb: String, options: ClientOptions, selection: Selection) throws {
        do {
            try act(verb, options: options, selection: selection)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CLIFailure.report(error)
        }
    }

    /// Acts on each agent in turn; every answer is printed (with --json, one array of the
    /// lead's answers), and the exit status is 1 when any failed.
    static func act(_ verb: String, options: ClientOptions, selection: Selection) throws {
        let client = try options.client()
        var failures = 0
        let chosen = try selection.resolve(client)
        var answers: [[UInt8]] = []
        defer { if options.json { print(jsonArray(answers)) } }
        for (path, name) in chosen {
            do {
                let raw = try client.post("/v1/agents/\(path)/\(verb)", json: Array("{}".utf8))
                if options.json {
                    answers.append(raw)
                } else {
                    let answer = try APICoding.decode([String: String].self, from: raw)
                    print("\(answer["agent"] ?? name): \(answer["action"] ?? verb)")
                }
            } catch {
                failures += 1
                FileHandleStderr.write("pimesh: \(name): \(error)\n")
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stop", abstract: "Stop supervised agents (SIGTERM, then SIGKILL after the stop timeout); they stay down until started.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var selection: Selection
        func run() async throws { try AgentCommand.run("stop", options: options, selection: selection) }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "start", abstract: "Start stopped (or given-up) supervised agents now, with a fresh backoff.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var selection: Selection
        func run() async throws { try AgentCommand.run("start", options: options, selection: selection) }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restart", abstract: "Restart supervised agents gracefully (SIGTERM, then a start); a stopped one is started.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var selection: Selection
        func run() async throws { try AgentCommand.run("restart", options: options, selection: selection) }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rollback", abstract: "Put back the manifest each agent ran with before its last change, and restart it with that.",
            discussion: """
                The lead keeps each supervised agent's previous manifest (in <data_dir>/manifest-history). \
                A second rollback undoes the first. The agents.d file is not rewritten: the rollback \
                holds while the file still holds the change, and ends when the file is edited.
                """)
        @OptionGroup var options: ClientOptions
        @OptionGroup var selection: Selection
        func run() async throws { try AgentCommand.run("rollback", options: options, selection: selection) }
    }

    /// `pimesh agent` alone, as manifests written before `sim-agent` existed run it.
    struct LegacySimulatedAgent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "simulated", abstract: "Deprecated: `pimesh sim-agent`.", shouldDisplay: false)

        @OptionGroup var simulation: SimAgentCommand.Simulation

        func run() async throws {
            FileHandleStderr.write(
                "pimesh: `pimesh agent` as a simulated agent is deprecated; write \"args\": [\"sim-agent\"] in the manifest\n")
            try await simulation.run()
        }
    }
}

/// One simulated agent, as a manifest in agents.d starts it: the job of `pimesh agent` in round 1.
struct SimAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim-agent",
        abstract: "Run one simulated agent, as a manifest in agents.d starts it.",
        discussion: """
            The identity comes from the environment that `pimesh run` sets for a supervised \
            agent (PIMESH_AGENT_ID, PIMESH_AGENT_SECRET_FD, PIMESH_HEARTBEAT_PORT, …; see \
            docs/operations.md). The agent heartbeats at the lead's interval, takes tasks and \
            works on each for the time its class and the payload weight predict. Use it in a \
            manifest to try supervision, restarts and healing:
              {"name": "worker-1", "command": "/usr/local/bin/pimesh", "args": ["sim-agent"], "capabilities": ["work"]}
            """
    )

    @OptionGroup var simulation: Simulation

    func run() async throws {
        try await simulation.run()
    }

    struct Simulation: ParsableArguments {
        @Option(name: .long, help: "Share of tasks (0…1) reported as failed.")
        var failRate: Double = 0

        @Option(name: .long, help: "normal, hang (holds a task without progress) or loop (progress, never finishes).")
        var behaviour: String = "normal"

        func validate() throws {
            guard (0...1).contains(failRate) else { throw ValidationError("--fail-rate \(failRate) is not between 0 and 1") }
            guard SimulatedAgent.Behaviour(rawValue: behaviour) != nil else {
                throw ValidationError("--behaviour \(behaviour) is not one of \(SimulatedAgent.Behaviour.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            let environment = ProcessEnvironment.current
            let credentials: AgentCredentials
            do {
                credentials = try AgentCredentials.fromEnvironment(environment)
            } catch {
                throw CLIFailure.report(CLIFailure("\(error)", exitCode: 78))
            }
            let agent = SimulatedAgent(
                credentials: credentials, dataDir: LeadDiscovery.defaultDataDir(environment: environment), failRate: failRate,
                behaviour: SimulatedAgent.Behaviour(rawValue: behaviour)!)
            try await agent.run()
        }
    }
}

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read agents.d (and check the config) without restarting the lead, as SIGHUP does.",
        discussion: """
            New manifests start, removed ones stop, changed ones restart when what they are \
            started with changed (command, args, env, user, class, capabilities, memory limit) \
            and are updated in place otherwise; agents whose manifests did not change are not \
            touched. A refused manifest leaves its agent as it was. Config keys that changed \
            since the lead started are named: they take effect at the next start \
            (`systemctl restart pimesh`). A config that does not parse refuses the whole reload. \
            Check first with `pimesh config check`.
            """
    )

    @OptionGroup var options: ClientOptions

    struct Report: Decodable {
        struct Agents: Decodable {
            var started: [String]
            var restarted: [String]
            var stopped: [String]
            var updated: [String]
            var unchanged: Int
            var refused: [String]
        }
        var agents: Agents
        var needsRestart: [String]
    }

    func run() async throws {
        do {
            let raw = try options.client().post("/v1/reload", json: Array("{}".utf8))
            if options.json {
                print(String(decoding: raw, as: UTF8.self))
                return
            }
            let report = try APICoding.decode(Report.self, from: raw)
            let a = report.agents
            let list = { (names: [String]) in names.isEmpty ? "none" : names.joined(separator: ", ") }
            print("started     \(list(a.started))")
            print("restarted   \(list(a.restarted))")
            print("stopped     \(list(a.stopped))")
            print("updated     \(list(a.updated))")
            print("unchanged   \(a.unchanged)")
            for refused in a.refused { print("refused     \(refused)") }
            if !report.needsRestart.isEmpty {
                print("config      changed \(report.needsRestart.joined(separator: ", ")): these take effect at the next lead start")
            }
            if !a.refused.isEmpty { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CLIFailure.report(error)
        }
    }
}

/// The lead's JSON answers to one action per agent as one array, so that a script reads any
/// number of agents alike.
func jsonArray(_ answers: [[UInt8]]) -> String {
    let bodies = answers.map { body in
        String(decoding: body.reversed().drop { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: " ") }.reversed(), as: UTF8.self)
    }
    return "[" + bodies.joined(separator: ",") + "]"
}
