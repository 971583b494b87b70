import ArgumentParser
import PimeshCommandLine
import PimeshRuntime
import PimeshSystem

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with the lead's config file.",
        subcommands: [Check.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate a config file and the agent manifests it points to.",
            discussion: """
                Names the file, line (and column, for a JSON syntax error), key and reason of each \
                problem. The manifests checked are those in supervision.agents_dir (default: \
                agents.d beside the config file), as `pimesh run` and `pimesh reload` read them. \
                Run it before `pimesh reload`. Exits 0 when everything is valid, 78 (EX_CONFIG) \
                when anything is not.
                """
        )

        @Argument(help: "The config file (the lead's default on a Pi is /etc/pimesh/pimesh.json).")
        var file: String = "/etc/pimesh/pimesh.json"

        @Option(name: .long, help: "The agent manifests to check (default: supervision.agents_dir, else agents.d beside the config).")
        var agentsDir: String?

        func run() async throws {
            let config: LeadConfig
            do {
                config = try ConfigLoader.load(path: file, trusted: true)
            } catch {
                throw CLIFailure.report(CLIFailure("\(error)", exitCode: 78))
            }
            print("\(file): ok (data_dir \(config.dataDir), api \(config.api.host):\(config.api.port), heartbeat \(config.heartbeat.host):\(config.heartbeat.port) every \(config.heartbeat.intervalMs) ms)")
            let directory = agentsDir ?? config.supervision.agentsDir ?? ConfigLoader.agentsDir(besideConfig: file)
            if let problem = TrustedFile.directoryProblem(directory), problem.missing {
                // Named on purpose, a missing directory is a typo; the default beside the config
                // may well not exist on a node without supervised agents.
                if agentsDir != nil || config.supervision.agentsDir != nil {
                    throw CLIFailure.report(CLIFailure("\(problem.reason) (supervision.agents_dir)", exitCode: 78))
                }
                print("\(directory): does not exist: no supervised agents")
                return
            }
            let (manifests, refused) = AgentManifest.loadDirectory(directory)
            for error in refused { FileHandleStderr.write("pimesh: \(error)\n") }
            print("\(directory): \(manifests.count) manifest\(manifests.count == 1 ? "" : "s") ok, \(refused.count) refused")
            if !refused.isEmpty { throw ExitCode(78) }
        }
    }
}
