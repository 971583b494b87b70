import ArgumentParser
import Glibc
import Logging
import PimeshAgent
import PimeshCommandLine
import PimeshRelease
import PimeshRuntime

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the cluster lead in the foreground (systemd runs it as Type=notify).",
        discussion: """
            Settings come from the config file, then these flags. The lead writes lead.json and \
            the 0600 node-token file into the data dir so that clients and agents find it. \
            Agents named in the agents dir are started (supervised) or healed (attached); see \
            docs/operations.md. SIGTERM or SIGINT stops it gracefully: agents get SIGTERM, \
            pending writes are committed.
            """
    )

    @Option(name: .long, help: "Data dir for the database, node token and lead.json (default: config, $PIMESH_DATA_DIR, else ./.pimesh).")
    var dataDir: String?

    @Option(name: .long, help: "JSON config file; every key is optional (see docs/configuration.md).")
    var config: String?

    @Option(name: .long, help: "Run dir for sockets (tmpfs on a Pi; default $RUNTIME_DIRECTORY, else <data-dir>/run).")
    var runDir: String?

    @Option(name: .long, help: "API port on loopback; 0 picks a free one (default 7420).")
    var apiPort: Int?

    @Option(name: .long, help: "Heartbeat UDP port on loopback; 0 picks a free one (default 7421).")
    var heartbeatPort: Int?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    @Option(name: .long, help: "Agent manifests (*.json) to start or heal (default: agents.d beside --config, else <data-dir>/agents.d).")
    var agentsDir: String?

    func validate() throws {
        for (flag, port) in [("--api-port", apiPort), ("--heartbeat-port", heartbeatPort)] {
            if let port, !(0...65535).contains(port) {
                throw ValidationError("\(flag) \(port) is not a port number (0…65535)")
            }
        }
        if let logLevel, !ConfigLoader.logLevels.contains(logLevel) {
            throw ValidationError("--log-level \(logLevel) is not one of \(ConfigLoader.logLevels.joined(separator: ", "))")
        }
    }

    /// SIGHUP is a reload, never the end of the lead (systemd's ExecReload, an operator's
    /// `kill -HUP`): ignored before the malloc self-exec, the config load and the release hash
    /// (seconds on an SD card), and kept ignored across the exec of a release.
    static func ignoreHangup() {
        signal(SIGHUP, SIG_IGN)
    }

    func run() async throws {
        Self.ignoreHangup()
        let environment = ProcessEnvironment.current
        // Defaults, then the environment, then the file, then flags.
        var settings = LeadConfig()
        settings.dataDir = LeadDiscovery.defaultDataDir(environment: environment)
        if let systemd = environment["RUNTIME_DIRECTORY"], !systemd.isEmpty { settings.runDir = systemd }
        if let config {
            do {
                settings = try ConfigLoader.load(path: config, base: settings, trusted: true)
                settings.configFile = config
            } catch {
                throw CLIFailure.report(CLIFailure("\(error)", exitCode: 78))
            }
        }
        if let dataDir { settings.dataDir = dataDir }
        if let runDir { settings.runDir = runDir }
        if let apiPort { settings.api.port = apiPort }
        if let heartbeatPort { settings.heartbeat.port = heartbeatPort }
        if let logLevel { settings.logLevel = logLevel }
        if let agentsDir {
            settings.supervision.agentsDir = agentsDir
        } else if settings.supervision.agentsDir == nil, let config {
            settings.supervision.agentsDir = ConfigLoader.agentsDir(besideConfig: config)
        }

        // An update made a release current: that binary leads, with these same arguments.
        let releaseRefused = ReleaseLauncher.execCurrentIfNeeded(dataDir: settings.dataDir, arguments: CommandLine.arguments, environment: environment)
        if let releaseRefused { FileHandleStderr.write("pimesh: \(releaseRefused)\n") }
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "pimesh")
        do {
            try await Lead(config: settings, logger: logger, environment: environment, releaseRefused: releaseRefused).run()
        } catch {
            throw CLIFailure.report(error)
        }
    }
}
