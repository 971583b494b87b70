import ArgumentParser
import Glibc
import PimeshCommandLine
import PimeshCore
import PimeshRuntime
import PimeshSnapshot

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
    ///
    /// The lead parses its flags with `run`'s parser alone: the whole command tree would make
    /// ArgumentParser reflect on every command's options, writing the metadata caches of all of
    /// them into pages of .bss that the lead then kept for its life (about 130 KB of private
    /// memory, docs/benchmarks.md). Help, a bad flag or any other parse error goes through the
    /// whole tree, so that what `pimesh run` prints is what every other command prints.
    static func main() async {
        // The lead's upload helper (HelperPut): one PUT, request on stdin, answer on stdout.
        if CommandLine.arguments.dropFirst().first == PutHelper.commandName {
            guard isatty(0) == 0 else {
                FileHandleStderr.write("pimesh \(PutHelper.commandName): the lead runs this for each upload, with the request on stdin; it is not for use by hand\n")
                Glibc.exit(2)
            }
            HelperPut.serveAsHelper()
        }
        if CommandLine.arguments.dropFirst().first == RunCommand.configuration.commandName {
            RunCommand.ignoreHangup()
            if let why = MallocTuning.applyForLead(arguments: CommandLine.arguments) {
                FileHandleStderr.write("pimesh: \(why)\n")
            }
            if let lead = (try? RunCommand.parseAsRoot(Array(CommandLine.arguments.dropFirst(2)))) as? RunCommand {
                do {
                    try await lead.run()
                } catch {
                    exit(withError: error)
                }
                return
            }
        }
        await main(nil)
    }
}
