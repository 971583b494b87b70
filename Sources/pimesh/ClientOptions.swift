import ArgumentParser
import Glibc
import PimeshAgent
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

/// A failure to report in one line on stderr, with a non-zero exit.
struct CLIFailure: Error, CustomStringConvertible {
    var description: String
    var exitCode: Int32

    init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

extension CLIFailure {
    static func report(_ error: any Error) -> ExitCode {
        let failure = error as? CLIFailure ?? CLIFailure("\(error)")
        FileHandleStderr.write("pimesh: \(failure.description)\n")
        return ExitCode(failure.exitCode)
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

enum ProcessEnvironment {
    static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }
}

enum Terminal {
    static var isInteractive: Bool {
        isatty(1) == 1
    }
}
