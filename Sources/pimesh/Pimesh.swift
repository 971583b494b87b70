import ArgumentParser
import PimeshCommandLine
import PimeshCore
import PimeshRuntime

// Every command names itself (`commandName:`): without it ArgumentParser derives the name with
// String(describing:), whose dynamic casts scan every protocol conformance in this large binary,
// once per command, at every start. That was most of the ~40 ms each `pimesh agent` process
// spent before its first heartbeat (a restarted agent's downtime, issue 18).
@main
struct Pimesh: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pimesh",
        abstract: "A lean cluster lead for the agents and containers on a Raspberry Pi.",
        discussion: """
            One `pimesh run` per Pi is the lead: agents register through its local API and \
            heartbeat to it over UDP. Every other command finds the lead through --data-dir \
            (default ./.pimesh, or $PIMESH_DATA_DIR) and its node-token file.
            """,
        version: PimeshVersion.current,
        subcommands: [
            RunCommand.self, StatusCommand.self, AgentsCommand.self, TasksCommand.self, DelegateCommand.self, AskCommand.self,
            BroadcastCommand.self, ConflictsCommand.self, HealCommand.self, FreezeCommand.self, ThawCommand.self, LogsCommand.self,
            EventsCommand.self, IncidentsCommand.self, PlaybooksCommand.self, DrillCommand.self, AuditCommand.self, SnapshotCommand.self, CoordinatorCommand.self, LedsCommand.self, SelftestCommand.self, AgentCommand.self, ReloadCommand.self, SwarmCommand.self, SimAgentCommand.self, ConfigCommand.self,
            BenchCommand.self, TokenCommand.self, UpdateCommand.self,
        ]
    )

    /// The lead's malloc settings hold only for threads that have not allocated yet (and one of
    /// them only from an exec): applied here, on the main thread, before the concurrency pool
    /// or any event loop has a thread.
    static func main() async {
        if CommandLine.arguments.dropFirst().first == RunCommand.configuration.commandName,
            let why = MallocTuning.applyForLead(arguments: CommandLine.arguments)
        {
            FileHandleStderr.write("pimesh: \(why)\n")
        }
        await main(nil)
    }
}
