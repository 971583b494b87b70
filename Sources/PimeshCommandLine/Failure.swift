import ArgumentParser
import Glibc

/// A failure to report in one line on stderr, with a non-zero exit.
public struct CLIFailure: Error, CustomStringConvertible {
    public var description: String
    public var exitCode: Int32

    public init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

extension CLIFailure {
    public static func report(_ error: any Error) -> ExitCode {
        let failure = error as? CLIFailure ?? CLIFailure("\(error)")
        FileHandleStderr.write("\(programName): \(failure.description)\n")
        return ExitCode(failure.exitCode)
    }

    /// How the program was called (pimesh, pimesh-coordinator), to start each error line with.
    static var programName: String {
        let invoked = CommandLine.arguments.first ?? "pimesh"
        return invoked.split(separator: "/").last.map(String.init) ?? invoked
    }
}

public enum FileHandleStderr {
    public static func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

public enum ProcessEnvironment {
    public static var current: [String: String] {
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

public enum Terminal {
    public static var isInteractive: Bool {
        isatty(1) == 1
    }
}
