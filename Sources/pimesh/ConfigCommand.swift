import ArgumentParser
import PimeshAgent
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
                agents.d beside the config file, else in the data dir), as `pimesh run` and \
                `pimesh reload` read them. \
                Run it before `pimesh reload`. Exits 0 when everything is valid, 78 (EX_CONFIG) \
                when anything is not.
                """
        )

        @Argument(help: "The config file (default: \(DataDirLocator.systemConfig) when it exists and no --data-dir is given; without one, what `pimesh run` uses without --config).")
        var file: String?

        @Option(name: .long, help: "The data dir `pimesh run` is given; its agents.d is checked when no config file is (default: $PIMESH_DATA_DIR, else ./.pimesh).")
        var dataDir: String?

        @Option(name: .long, help: "The agent manifests to check (default: supervision.agents_dir, else agents.d beside the config, else in the data dir).")
        var agentsDir: String?

        /// What `pimesh run` with these same settings would use (RunCommand): defaults, the
        /// environment, the file, then flags.
        func run() async throws {
            var config = LeadConfig()
            config.dataDir = LeadDiscovery.defaultDataDir(environment: ProcessEnvironment.current)
            // --data-dir names a lead started by hand, which reads no file it was not given.
            let path = dataDir == nil ? DataDirLocator.configFile(explicit: file) : file
            if let path {
                do {
                    config = try ConfigLoader.load(path: path, base: config, trusted: true)
                } catch {
                    throw CLIFailure.report(CLIFailure("\(error)", exitCode: 78))
                }
            }
            if let dataDir { config.dataDir = dataDir }
            let summary = "data_dir \(config.dataDir), api \(config.api.host):\(config.api.port), heartbeat \(config.heartbeat.host):\(config.heartbeat.port) every \(config.heartbeat.intervalMs) ms"
            print(path.map { "\($0): ok (\(summary))" } ?? "no config file (\(DataDirLocator.systemConfig) does not exist): the defaults (\(summary))")
            let directory = agentsDir ?? config.supervision.agentsDir ?? path.map(ConfigLoader.agentsDir(besideConfig:)) ?? config.dataDir + "/agents.d"
            if let problem = TrustedFile.directoryProblem(directory), problem.missing {
                // Named on purpose, a missing directory is a typo; the default may well not
                // exist on a node without supervised agents.
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
