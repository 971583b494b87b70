import Glibc
import PimeshSystem
import PimeshAgent

/// `pimesh run` from the package hands over to `<data-dir>/current/pimesh` when an update made
/// one current (the unit's ExecStart stays /usr/bin/pimesh). exec keeps the pid, so systemd's
/// Type=notify and watchdog see the same main process.
public enum ReleaseLauncher {
    /// Set in the environment of the exec'd release: it never hands over again, whatever it finds.
    static let handedOverVariable = "PIMESH_RELEASE_HANDOVER"

    /// Returns (with a reason) only when it did not exec; the caller runs on as it is.
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
        let argv = [target] + arguments.dropFirst()
        var cArguments = argv.map { strdup($0) } + [nil]
        var env = environment.filter { $0.key != handedOverVariable }.map { "\($0.key)=\($0.value)" }
        env.append("\(handedOverVariable)=\(release)")
        var cEnvironment = env.map { strdup($0) } + [nil]
        // exec keeps the signal mask and ignored signals; the release starts as systemd started us.
        var empty = sigset_t()
        sigemptyset(&empty)
        sigprocmask(SIG_SETMASK, &empty, nil)
        for number in 1..<Int32(32) where number != SIGKILL && number != SIGSTOP {
            signal(number, SIG_DFL)
        }
        execve(target, &cArguments, &cEnvironment)
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
