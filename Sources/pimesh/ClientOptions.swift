import ArgumentParser
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshRuntime

/// What every client command takes: where the lead keeps its data, and how to print.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "The lead's data dir (default: $PIMESH_DATA_DIR, else the config's data_dir, else ./.pimesh).")
    var dataDir: String?

    @Option(name: .long, help: "The lead's config file, whose data_dir locates the lead (default: \(DataDirLocator.systemConfig) when it exists).")
    var config: String?

    @Flag(name: .long, help: "Print JSON for scripts instead of a table.")
    var json = false

    /// The data dir of the running lead, found as the unit runs it (DataDirLocator).
    func locatedDataDir() throws -> String {
        do {
            return try DataDirLocator.locate(dataDir: dataDir, config: config, environment: ProcessEnvironment.current)
        } catch let error as ConfigError {
            throw CLIFailure("\(error)", exitCode: 78)
        } catch {
            throw CLIFailure("\(error)")
        }
    }

    /// POSTs an operator's action; prints the lead's answer with --json, else `done`.
    func act(_ path: String, body: [UInt8] = Array("{}".utf8), done: String) throws {
        let raw = try client().post(path, json: body)
        print(json ? String(decoding: raw, as: UTF8.self) : done)
    }

    func client() throws -> LeadClient {
        do {
            return try LeadClient(dataDir: locatedDataDir())
        } catch {
            throw CLIFailure("\(error)")
        }
    }
}
