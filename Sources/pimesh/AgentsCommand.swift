import ArgumentParser
import PimeshAgent

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
            (above 0.5 is unstable), CONF the seed's confidence 0–1. HEALTH is pending (not heard \
            yet since the lead started), alive, suspected, hung, looping, exited, frozen, left \
            (said goodbye) or departed (silent past agents.expire_after_s). See docs/impedance.md.
            """
    )

    @OptionGroup var options: ClientOptions

    @Option(name: .long, help: "Sort by name, score or state (default name).")
    var sort: String = "name"

    func validate() throws {
        guard ["name", "score", "state"].contains(sort) else {
            throw ValidationError("--sort \(sort) is not one of name, score, state")
        }
    }

    func run() async throws {
        do {
            let list = try options.client().agents()
            if options.json {
                print(String(decoding: try APICoding.encode(list), as: UTF8.self))
                return
            }
            var agents = list.agents
            switch sort {
            case "score": agents.sort { ($0.impedance.score, $0.name) < ($1.impedance.score, $1.name) }
            case "state": agents.sort { ($0.state, $0.name) < ($1.state, $1.name) }
            default: break
            }
            print(Self.render(agents))
        } catch {
            throw CLIFailure.report(error)
        }
    }

    static func render(_ agents: [AgentView]) -> String {
        var table = TextTable(
            ["NAME", "ID", "CLASS", "STATE", "HEALTH", "SCORE", "ARRIVAL", "LATENCY", "QUEUE", "DRIFT", "CONF", "RELIAB", "LAST HB", "FLAGS"],
            rightAligned: [5, 6, 7, 8, 9, 10, 11, 12])
        for agent in agents {
            let i = agent.impedance
            var flags: [String] = []
            if i.degraded { flags.append("degraded") }
            if i.unstable { flags.append("unstable") }
            if agent.quarantined { flags.append("quarantined") }
            if let health = agent.health, health.breaker != "CLOSED" { flags.append("breaker \(health.breaker)") }
            if let limit = agent.health?.canaryLimit { flags.append("canary \(limit)") }
            if let supervision = agent.supervision {
                flags.append(supervision.pid.map { "pid \($0)" } ?? "not running")
                if supervision.restarts > 0 { flags.append("restarts \(supervision.restarts)") }
            }
            table.add([
                agent.name, String(agent.id.description.prefix(8)), agent.agentClass.rawValue, agent.state, agent.health?.condition ?? "–", String(i.score),
                Format.decimal(i.predictedArrivalMs) + " ms", Format.decimal(i.latencyMs) + " ms", String(i.queueDepth),
                Format.decimal(i.drift, places: 2), Format.decimal(i.confidence, places: 2), Format.decimal(i.reliability, places: 2),
                agent.lastHeartbeatMsAgo.map { "\($0) ms ago" } ?? "never", flags.joined(separator: ","),
            ])
        }
        return table.render() + "\n\(agents.count) agents"
    }
}
