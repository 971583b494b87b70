import Glibc
import PimeshAgent
import PimeshCore
import PimeshSnapshot
import PimeshSystem

/// `pimesh run` from the package hands over to `<data-dir>/current/pimesh` when an update made
/// one current (the unit's ExecStart stays /usr/bin/pimesh). exec keeps the pid, so systemd's
/// Type=notify and watchdog see the same main process.
public enum ReleaseLauncher {
    /// Set in the environment of the exec'd release: it never hands over again, whatever it finds.
    static let handedOverVariable = "PIMESH_RELEASE_HANDOVER"

    /// Returns (with a reason) only when it did not exec; the caller runs on as it is.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    public static func execCurrentIfNeeded(dataDir: String, arguments: [String], environment: [String: String]) -> String? {
        if environment[handedOverVariable] != nil { return nil }
        let store = ReleaseStore(dataDir: dataDir)
        guard let release = store.release(at: .current) else { return nil }
        let target = store.binary(of: release)
        guard let resolvedTarget = ReleaseStore.resolvedPath(target) else {
            return "\(dataDir)/current names release \(release), which has no binary; running the packaged one"
        }
        if ReleaseStore.resolvedPath("/proc/self/exe") == resolvedTarget { return nil }
        if let why = unsafeReason(resolvedTarget) ?? unsafeReason(store.directory(of: release)) ?? unsafeReason(store.releasesDir) {
            return "not running release \(release): \(why); running the packaged one"
        }
        // The binary must still be the release its directory names: anything running as the
        // lead's user (its own files, an agent run as that user) could have replaced it since
        // it was staged and signed. It is run from the descriptor that was hashed.
        // A regular file, opened without blocking: a FIFO there must not hang every start.
        guard let (fd, _) = try? FileIO.openRegular(path: target) else {
            return "cannot open \(target) as a regular file; running the packaged one"
        }
        defer { close(fd) }
        let digest: String
        do {
            digest = Hex.encode(try LZ4Frame.sha256(of: fd).digest)
        } catch {
            return "cannot read \(target): \(error); running the packaged one"
        }
        guard digest == release else {
            return "not running release \(release): its binary \(target) is no longer the one staged under that SHA-256 (it hashes to \(digest)); running the packaged one"
        }
        let argv = [target] + arguments.dropFirst()
        var cArguments = argv.map { strdup($0) } + [nil]
        var env = environment.filter { $0.key != handedOverVariable }.map { "\($0.key)=\($0.value)" }
        env.append("\(handedOverVariable)=\(release)")
        var cEnvironment = env.map { strdup($0) } + [nil]
        // exec keeps the signal mask and ignored signals; the release starts as systemd started
        // us, except that SIGHUP stays ignored (`pimesh run` ignores it first thing): one sent
        // between the exec and the release's own ignore would end the lead.
        var empty = sigset_t()
        sigemptyset(&empty)
        sigprocmask(SIG_SETMASK, &empty, nil)
        for number in 1..<Int32(32) where number != SIGKILL && number != SIGSTOP && number != SIGHUP {
            signal(number, SIG_DFL)
        }
        fexecve(fd, &cArguments, &cEnvironment)
        let reason = "cannot exec \(target): \(String(cString: strerror(errno))); running the packaged one"
        for pointer in cArguments { free(pointer) }
        for pointer in cEnvironment { free(pointer) }
        return reason
    }

    /// Whoever may write the binary or its directory could run code as the lead.
    static func unsafeReason(_ path: String) -> String? {
        TrustedFile.unsafeReason(path)
    }
}
