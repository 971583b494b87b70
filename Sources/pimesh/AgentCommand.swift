import ArgumentParser
import PimeshAgent
import PimeshRuntime

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run one simulated agent, as a manifest in agents.d starts it.",
        discussion: """
            The identity comes from the environment that `pimesh run` sets for a supervised \
            agent (PIMESH_AGENT_ID, PIMESH_AGENT_SECRET, PIMESH_HEARTBEAT_PORT, …; see \
            docs/operations.md). The agent heartbeats at the lead's interval, pulls tasks and \
            works on each for the time its class and the payload weight predict. Use it in a \
            manifest to try supervision, restarts and healing:
              {"name": "worker-1", "command": "/usr/local/bin/pimesh", "args": ["agent"], "capabilities": ["work"]}
            """
    )

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
