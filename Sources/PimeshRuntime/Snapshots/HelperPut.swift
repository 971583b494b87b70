import CSpawn
import Glibc
import PimeshCore
import PimeshSnapshot
import PimeshSystem

/// Carries out each PUT in a short-lived `pimesh transfer-helper` process, so that the lead
/// itself never maps libcurl and the chain it loads (issue 14: 1.2 MB of private memory and
/// 1–1.5 MB of PSS for the rest of the lead's life after its first upload; docs/benchmarks.md).
///
/// The helper is a child like any other (ChildProcess): no descriptor of the lead's but its
/// stdin, an anonymous file holding the request, and its stdout, a pipe for the answer; no
/// capability. Credentials travel in that file, never in its arguments, which every user can
/// read in /proc; its environment is only what libcurl reads (`passedEnvironment`), and it
/// makes itself non-dumpable as it starts (`serveAsHelper`), so that other processes of the
/// lead's user cannot read its stdin or environment through /proc either. A lead that stops
/// kills it; a helper whose lead is gone ends its transfer by itself.
public struct HelperPut: PutTransport {
    /// The helper is this binary: /proc/self/exe names it even after `pimesh update` replaced
    /// the file on disk, so a lead never runs a helper of another version.
    public static let thisBinary = "/proc/self/exe"
    /// Beyond the request's own timeout (which libcurl keeps in the helper) before it is killed.
    static let graceSeconds: Int64 = 30
    /// The answer line is at most 64 KiB of body in hex plus headers; more is not a helper's.
    static let maxOutputBytes = 1 << 20

    let program: String
    let environment: [String]
    /// Told after each helper: how long it ran and its peak RSS in KiB (for the log).
    let finished: (@Sendable (_ milliseconds: Int64, _ peakRSSKiB: Int) -> Void)?

    public init(
        program: String = thisBinary, environment: [String: String],
        finished: (@Sendable (_ milliseconds: Int64, _ peakRSSKiB: Int) -> Void)? = nil
    ) {
        self.program = program
        self.environment = environment.filter { Self.passes($0.key) }.map { "\($0.key)=\($0.value)" }.sorted()
        self.finished = finished
    }

    /// What of the lead's environment a helper gets: what libcurl and its TLS library read
    /// (proxies, CA bundles), the search path and the locale; never the rest, which may hold
    /// secrets such as `AWS_SECRET_ACCESS_KEY` (the S3 secret travels in the request).
    static let passedEnvironment: Set<String> = [
        "PATH", "LANG", "TZ", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
    ]

    static func passes(_ name: String) -> Bool {
        passedEnvironment.contains(name) || name.hasPrefix("LC_")
    }

    /// `pimesh transfer-helper`: made non-dumpable before it reads its request (its stdin and
    /// environment become root's to read in /proc, as a process with capabilities is), then
    /// one PUT. Its exit skips atexit handlers: nothing a library prints on the way out can
    /// follow the answer.
    public static func serveAsHelper() -> Never {
        _ = pimesh_set_dumpable(0)
        _exit(PutHelper.serve())
    }

    public func put(_ request: PutRequest, body: PutBody, abort: TransferAbort) throws(TransferFailure) -> PutAnswer {
        guard !abort.isAborted else { throw TransferFailure(description: "\(request.url): aborted, the lead is stopping") }
        let input = try Self.anonymousFile(holding: try PutHelper.order(request, body: body))
        defer { close(input) }
        let started = Clock.monotonicNow()
        let spawned: ChildProcess.Spawned
        do {
            spawned = try ChildProcess.spawn(
                program: program, arguments: [PutHelper.commandName], environment: environment, captureOutput: true, inputDescriptor: input)
        } catch {
            throw TransferFailure(description: "\(request.url): cannot start the transfer helper: \(error)")
        }
        guard let output = spawned.output else {
            kill(spawned.pid, SIGKILL)
            var ignored: Int32 = 0
            while waitpid(spawned.pid, &ignored, 0) < 0 && errno == EINTR {}
            throw TransferFailure(description: "\(request.url): the transfer helper has no output pipe")
        }
        defer { close(output) }
        let deadline = started.nanoseconds + (Int64(request.timeoutS) + Self.graceSeconds) * 1_000_000_000
        var collected: [UInt8] = []
        var ended: String?
        var chunk = [UInt8](repeating: 0, count: 1 << 14)
        while true {
            if abort.isAborted {
                ended = "\(request.url): aborted, the lead is stopping"
            } else if Clock.monotonicNow().nanoseconds > deadline {
                ended = "\(request.url): the transfer helper did not finish within \(Int64(request.timeoutS) + Self.graceSeconds) s"
            } else if collected.count > Self.maxOutputBytes {
                ended = "\(request.url): the transfer helper wrote more than \(Self.maxOutputBytes) bytes"
            }
            if ended != nil {
                kill(spawned.pid, SIGKILL)
                break
            }
            // A quarter of a second between looks at the abort flag: a stopping lead waits no longer.
            var ready = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let polled = poll(&ready, 1, 250)
            if polled < 0 && errno != EINTR { ended = "\(request.url): poll: \(String(cString: strerror(errno)))"; kill(spawned.pid, SIGKILL); break }
            guard polled > 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if count < 0 {
                // Killed before the wait below: it would otherwise wait out the whole transfer.
                ended = "\(request.url): reading the transfer helper's answer: \(String(cString: strerror(errno)))"
                kill(spawned.pid, SIGKILL)
                break
            }
            if count == 0 { break }
            collected += chunk[..<count]
        }
        var status: Int32 = 0
        var usage = rusage()
        var reaped = wait4(spawned.pid, &status, 0, &usage)
        while reaped < 0 && errno == EINTR { reaped = wait4(spawned.pid, &status, 0, &usage) }
        finished?((Clock.monotonicNow().nanoseconds - started.nanoseconds) / 1_000_000, Int(usage.ru_maxrss))
        if let ended { throw TransferFailure(description: ended) }
        do {
            return try PutHelper.answer(fromOutput: collected)
        } catch {
            let how = reaped < 0 ? (text: "could not be waited for", clean: false) : ChildProcess.describe(waitStatus: status)
            throw TransferFailure(description: how.clean ? error.description : "\(error.description) (the transfer helper \(how.text))")
        }
    }

    /// The request in an anonymous file (memfd), read from its start by the helper: nothing to
    /// write while the helper runs, so no pipe to fill, and nothing on disk.
    static func anonymousFile(holding bytes: [UInt8]) throws(TransferFailure) -> Int32 {
        let fd = pimesh_memfd_cloexec("pimesh-put")
        guard fd >= 0 else { throw TransferFailure(description: "memfd_create: \(String(cString: strerror(errno)))") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                let why = String(cString: strerror(errno))
                close(fd)
                throw TransferFailure(description: "cannot write the transfer helper's request: \(why)")
            }
            offset += written
        }
        guard lseek(fd, 0, SEEK_SET) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw TransferFailure(description: "cannot rewind the transfer helper's request: \(why)")
        }
        return fd
    }
}
