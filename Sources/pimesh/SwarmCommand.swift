import ArgumentParser
import Logging
import PimeshAgent
import PimeshCommandLine
import PimeshSim
import PimeshRuntime
import ServiceLifecycle

struct SwarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swarm",
        abstract: "Simulate N agents in one process, speaking the real protocol to a running lead.",
        discussion: """
            Each simulated agent registers with its own identity and secret and sends signed \
            heartbeats at the lead's interval, with its own latency, jitter and queue depth, so \
            that scores differ. Unless --no-work, each agent takes tasks and asks (as datagrams to its \
            heartbeat socket; --transport long-poll holds a long poll per agent instead) and \
            works on them for the time its class and the payload weight predict (± 5 %), \
            failing --fail-rate of its tasks. Identities are saved (0600) and reused on the next start. \
            Stops on SIGTERM/SIGINT or after --duration.
            """
    )

    @OptionGroup var options: ClientOptions

    @Option(name: .long, help: "How many agents to simulate.")
    var agents: Int = 100

    @Option(name: .long, help: "Agent names are <prefix>-001, <prefix>-002, …")
    var namePrefix: String = "swarm"

    @Option(name: .long, help: "Where identities are kept (default <data-dir>/swarm-<prefix>.json).")
    var stateFile: String?

    @Option(name: .long, help: "Seed for the agents' simulated behaviour.")
    var seed: UInt64 = 42

    @Option(name: .long, help: "Stop after this many seconds (default: run until stopped).")
    var duration: Double?

    @Option(name: .long, help: "Share of tasks (0…1) the simulated agents report as failed.")
    var failRate: Double = 0

    @Option(name: .long, help: "Share of ask/broadcast answers (0…1) that are CONFLICT (DATA_CONTRADICTION).")
    var conflictRate: Double = 0

    @Flag(name: .long, help: "Heartbeat only: pull no tasks and answer no asks (heartbeat load benchmarks).")
    var noWork = false

    @Option(name: .long, help: "How work reaches the agents: datagrams or long-poll.")
    var transport: String = "datagrams"

    @Option(name: .long, help: "Share (0…1) of work datagrams the agents throw away unread, to try loss and retransmission.")
    var dropWorkDatagrams: Double = 0

    @Option(name: .long, help: "Every agent offers exactly these capabilities (comma-separated), instead of a mix of sense, infer, store, relay and actuate.")
    var capabilities: String?

    @Option(name: .long, help: "Stop, every agent leaving, once the process with this pid is no longer the swarm's parent (`pimesh bench run` passes its own).")
    var parentPid: Int32?

    func validate() throws {
        guard (1...10_000).contains(agents) else { throw ValidationError("--agents must be 1…10000, not \(agents)") }
        guard !namePrefix.isEmpty, namePrefix.utf8.count <= 40,
            namePrefix.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        else {
            throw ValidationError("--name-prefix must be 1–40 letters, digits, '-', '_' or '.'")
        }
        guard (0..<1).contains(dropWorkDatagrams) else {
            throw ValidationError("--drop-work-datagrams must be at least 0 and below 1, not \(dropWorkDatagrams)")
        }
        guard ["datagrams", "long-poll"].contains(transport) else {
            throw ValidationError("--transport must be datagrams or long-poll, not \(transport)")
        }
        if let duration, duration <= 0 { throw ValidationError("--duration must be above 0 seconds") }
        if let capabilities, capabilities.split(separator: ",", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
            throw ValidationError("--capabilities must name one or more capabilities, comma-separated, not '\(capabilities)'")
        }
        guard (0...1).contains(failRate) else { throw ValidationError("--fail-rate must be between 0 and 1, not \(failRate)") }
        guard (0...1).contains(conflictRate) else {
            throw ValidationError("--conflict-rate must be between 0 and 1, not \(conflictRate)")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        let logger = Logger(label: "pimesh-swarm")
        let dataDir = try options.locatedDataDir()
        var settings = SimulatedSwarm.Settings(
            dataDir: dataDir, agents: agents, namePrefix: namePrefix,
            stateFile: stateFile ?? "\(dataDir)/swarm-\(namePrefix).json", seed: seed,
            duration: duration.map { .milliseconds($0 * 1000) })
        settings.work = !noWork
        settings.transport = transport == "long-poll" ? .longPoll : .datagrams
        settings.dropWorkDatagrams = dropWorkDatagrams
        settings.failRate = failRate
        settings.conflictRate = conflictRate
        settings.capabilities = capabilities.map { $0.split(separator: ",").map(String.init) }
        settings.parentPID = parentPid
        let swarm = SimulatedSwarm(settings: settings, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: swarm, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            throw CLIFailure.report(error)
        }
    }
}
