import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshRuntime

/// For commands that act on this device directly rather than through a running lead
/// (`leds test`, `selftest`): the same config file and data dir `pimesh run` would use.
struct LocalConfigOptions: ParsableArguments {
    @Option(name: .long, help: "JSON config file, as for `pimesh run` (default: \(DataDirLocator.systemConfig) when it exists, else built-in defaults).")
    var config: String?

    @Option(name: .long, help: "Data dir (default: config, $PIMESH_DATA_DIR, else ./.pimesh).")
    var dataDir: String?

    /// Defaults, then the environment, then the file, then flags, as `pimesh run` does.
    func load() throws -> LeadConfig {
        var settings = LeadConfig()
        settings.dataDir = LeadDiscovery.defaultDataDir(environment: ProcessEnvironment.current)
        if let config = DataDirLocator.configFile(explicit: config) {
            do {
                // Trusted as `pimesh run` trusts it: `update apply` takes its release keys from it.
                settings = try ConfigLoader.load(path: config, base: settings, trusted: true)
            } catch {
                throw CLIFailure("\(error)", exitCode: 78)
            }
        }
        if let dataDir { settings.dataDir = dataDir }
        return settings
    }
}
