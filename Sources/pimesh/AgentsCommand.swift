import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

struct AgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents",
        abstract: "List registered agents (the default), or remove one for good.",
        subcommands: [AgentsListCommand.self, AgentsRemoveCommand.self],
        defaultSubcommand: AgentsListCommand.self
    )
}

struct AgentsRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Delete an agent from the registry and the store for good; its open tasks are requeued.",
        discussion: """
            An agent a manifest in agents.d names cannot be removed while the manifest is there: \
            remove the file first. An agent that merely stopped needs no removal: it is `left` \
            when it said goodbye, `departed` after agents.expire_after_s of silence.
            """
    )

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id.")
    var name: String

    func run() async throws {
        do {
            let raw = try options.client().delete("/v1/agents/\(name)")
            print(options.json ? String(decoding: raw, as: UTF8.self) : "removed \(name)")
        } catch {
            throw CLIFailure.report(error)
        }
    }
}

struct AgentsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List registered agents with their state and impedance.",
        discussion: """
            SCORE is the impedance score 0–1000 (lower is better; above 800 is degraded), ARRIVAL \
            the predicted time until work sent now is done, DRIFT the latency's relative spread \
            (above 0.5 is unstable), CONF the seed's confidence 0–1, SEEN the time since the last \
            heartbeat. HEALTH is pending (not heard yet since the lead started), alive, suspected, \
            hung, looping, exited, frozen, stopped (by an operator), left (said goodbye) or \
            departed (silent past agents.expire_after_s). Ids may be given as any unique prefix of \
            4 or more characters. See docs/impedance.md.
            """
    )

    @OptionGroup var options: ClientOptions

    @Option(name: .long, help: "Sort by name, score or state.")
    var sort: String = "name"

    @Option(name: .long, help: "Only agents in this protocol state: READY, TRANSIT, CONFLICT (any case).")
    var state: String?

    @Option(name: .long, help: "Only agents in this health condition: alive, stopped, suspected, …")
    var condition: String?

    @Option(name: .long, help: "Only agents with this capability.")
    var capability: String?

    @Option(name: [.customShort("o"), .long], help: "wide: every column (the default table fits 100 columns); json: as --json.")
    var output: String?

    func validate() throws {
        guard ["name", "score", "state"].contains(sort) else {
            throw ValidationError("--sort \(sort) is not one of name, score, state")
        }
        if let output, !["wide", "json"].contains(output) { throw ValidationError("-o \(output) is not one of wide, json") }
        let states = TrinaryState.allCases.map(\.description)
        if let state, !states.contains(where: state.caseInsensitiveEquals) {
            throw ValidationError("--state \(state) is not one of \(states.joined(separator: ", "))")
        }
        if let condition, !(["pending"] + AgentCondition.allCases.map(\.rawValue)).contains(condition) {
            throw ValidationError("--condition \(condition) is not one of pending, \(AgentCondition.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        do {
            var list = try options.client().agents()
            list.agents = list.agents.filter { agent in
                (state.map { agent.state.caseInsensitiveEquals($0) } ?? true)
                    && (condition.map { agent.health?.condition == $0 } ?? true)
                    && (capability.map { agent.capabilities.contains($0) } ?? true)
            }
            if options.json || output == "json" {
                print(String(decoding: try APICoding.encode(list), as: UTF8.self))
                return
            }
            var agents = list.agents
            switch sort {
            case "score": agents.sort { ($0.impedance.score, $0.name) < ($1.impedance.score, $1.name) }
            case "state": agents.sort { ($0.state, $0.name) < ($1.state, $1.name) }
            default: break
            }
            print(Self.render(agents, wide: output == "wide"))
        } catch {
            throw CLIFailure.report(error)
        }
    }

    /// The default fits 100 columns with names of up to 16 characters; `wide` has every figure.
    static func render(_ agents: [AgentView], wide: Bool = false) -> String {
        let header =
            wide
            ? ["NAME", "ID", "CLASS", "STATE", "HEALTH", "SCORE", "ARRIVAL", "LATENCY", "QUEUE", "DRIFT", "CONF", "RELIAB", "SEEN", "CAPABILITIES", "FLAGS"]
            : ["NAME", "ID", "STATE", "HEALTH", "SCORE", "ARRIVAL", "SEEN", "CAPABILITIES"]
        var table = TextTable(header, rightAligned: wide ? [5, 6, 7, 8, 9, 10, 11, 12] : [4, 5, 6])
        for agent in agents {
            let i = agent.impedance
            let seen = agent.lastHeartbeatMsAgo.map { UTCTime.age($0) } ?? "never"
            let capabilities = agent.capabilities.joined(separator: ",")
            if wide {
                table.add([
                    agent.name, String(agent.id.description.prefix(8)), agent.agentClass.rawValue, agent.state, agent.health?.condition ?? "–",
                    String(i.score), DecimalText.format(i.predictedArrivalMs) + " ms", DecimalText.format(i.latencyMs) + " ms", String(i.queueDepth),
                    DecimalText.format(i.drift, places: 2), DecimalText.format(i.confidence, places: 2), DecimalText.format(i.reliability, places: 2),
                    seen, capabilities, flags(of: agent).joined(separator: ","),
                ])
            } else {
                table.add([
                    agent.name, String(agent.id.description.prefix(8)), agent.state, agent.health?.condition ?? "–", String(i.score),
                    DecimalText.format(i.predictedArrivalMs, places: 0) + " ms", seen,
                    capabilities.count > 24 ? String(capabilities.prefix(23)) + "…" : capabilities,
                ])
            }
        }
        return table.render() + "\n\(agents.count) agent\(agents.count == 1 ? "" : "s")" + (wide ? "" : " (-o wide for every column)")
    }

    static func flags(of agent: AgentView) -> [String] {
        let i = agent.impedance
        var flags: [String] = []
        if i.degraded { flags.append("degraded") }
        if i.unstable { flags.append("unstable") }
        if agent.quarantined { flags.append("quarantined") }
        if let health = agent.health, health.breaker != "CLOSED" { flags.append("breaker \(health.breaker)") }
        if let limit = agent.health?.canaryLimit { flags.append("canary \(limit)") }
        if let supervision = agent.supervision {
            flags.append(supervision.pid.map { "pid \($0)" } ?? (supervision.stopped ? "stopped" : "not running"))
            if supervision.restarts > 0 { flags.append("restarts \(supervision.restarts)") }
        }
        return flags
    }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        lowercased() == other.lowercased()
    }
}
