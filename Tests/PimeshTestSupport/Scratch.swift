import Foundation
import Synchronization

/// Scratch directories for tests, under $TMPDIR (or /tmp), each removed when the test process
/// exits, however its test ended (a failed expectation, a thrown error, an early return), unless
/// the process itself crashed or was killed. Runs of `make test` had left thousands behind.
public enum Scratch {
    private static let made = Mutex<[String]>([])
    private static let removedAtExit: Bool = atexit { Scratch.removeAll() } == 0

    /// A new directory named `<prefix>-XXXXXX`. The mode is the test's: 0700 by default, 0755
    /// where other users (agents under setpriv) must reach into it, as a plain mkdir gave before.
    public static func directory(_ prefix: String, mode: mode_t = 0o700) -> String {
        let environment = ProcessInfo.processInfo.environment["TMPDIR"] ?? ""
        let base = environment.isEmpty ? "/tmp" : (environment.hasSuffix("/") ? String(environment.dropLast()) : environment)
        var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
        guard let created = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            fatalError("mkdtemp in \(base): \(String(cString: strerror(errno)))")
        }
        let path = String(cString: created)
        precondition(chmod(path, mode) == 0, "chmod \(path)")
        precondition(removedAtExit, "atexit")
        made.withLock { $0.append(path) }
        return path
    }

    static func removeAll() {
        for path in made.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: path) }
    }
}
