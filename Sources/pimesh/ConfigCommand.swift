import ArgumentParser
import PimeshRuntime

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with the lead's config file.",
        subcommands: [Check.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Validate a config file: names the key, line and reason of the first problem.",
            discussion: "Exits 0 when the file is valid, 78 (EX_CONFIG) when it is not."
        )

        @Argument(help: "The config file (the lead's default on a Pi is /etc/pimesh/pimesh.json).")
        var file: String = "/etc/pimesh/pimesh.json"

        func run() async throws {
            do {
                let config = try ConfigLoader.load(path: file)
                print("\(file): ok (data_dir \(config.dataDir), api \(config.api.host):\(config.api.port), heartbeat \(config.heartbeat.host):\(config.heartbeat.port) every \(config.heartbeat.intervalMs) ms)")
            } catch {
                throw CLIFailure.report(CLIFailure("\(error)", exitCode: 78))
            }
        }
    }
}
