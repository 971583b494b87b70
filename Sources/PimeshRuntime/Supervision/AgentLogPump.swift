import Glibc
import PimeshAgent
import Synchronization

/// Copies supervised agents' stdout/stderr into `<run_dir>/logs/NAME.log` on one thread that
/// polls every pipe. Each log is capped: past `maxBytes` it is renamed to NAME.log.1 (the
/// previous .1 is dropped), so an agent's logs never take more than twice the cap and never
/// touch the SD card when the run dir is tmpfs.
final class AgentLogPump: Sendable {
    private struct Source {
        var fd: Int32
        var path: String
        var written: Int
    }

    private let directory: String
    private let maxBytes: Int
    private let sources = Mutex<[Int32: Source]>([:])
    /// A pipe that wakes the poll when a new source is attached: [read, write].
    private let wake: [Int32]
    private let running = Atomic<Bool>(false)

    init(directory: String, maxBytes: Int) throws {
        self.directory = directory
        self.maxBytes = max(4096, maxBytes)
        try FileIO.makeDirectories(directory, mode: 0o750)
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw ChildProcess.SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        for fd in ends {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        wake = ends
    }

    func path(of name: String) -> String {
        directory + "/" + name + ".log"
    }

    /// Starts copying `fd` (a pipe's read end, owned by the pump from now on) into NAME.log,
    /// after a header line that marks the start.
    func attach(fd: Int32, name: String, header: String) {
        let path = path(of: name)
        var written = Self.size(of: path)
        let line = Array(("--- " + header + " ---\n").utf8)
        written += append(line, to: path)
        sources.withLock { $0[fd] = Source(fd: fd, path: path, written: written) }
        if !running.exchange(true, ordering: .acquiringAndReleasing) { start() }
        var one: UInt8 = 1
        _ = write(wake[1], &one, 1)
    }

    private func start() {
        let pump = Unmanaged.passRetained(self)
        var thread = pthread_t()
        pthread_create(&thread, nil, { context in
            Unmanaged<AgentLogPump>.fromOpaque(context!).takeRetainedValue().loop()
            return nil
        }, pump.toOpaque())
        pthread_detach(thread)
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var fds = sources.withLock { $0.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) } }
            fds.append(pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0))
            let ready = poll(&fds, nfds_t(fds.count), 1000)
            if ready < 0 && errno != EINTR { return }
            for entry in fds where entry.revents != 0 {
                if entry.fd == wake[0] {
                    var drain = [UInt8](repeating: 0, count: 64)
                    _ = read(wake[0], &drain, 64)
                    continue
                }
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    copy(Array(buffer[0..<count]), from: entry.fd)
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    // EOF: the child and everything it started closed the pipe.
                    sources.withLock { _ = $0.removeValue(forKey: entry.fd) }
                    close(entry.fd)
                }
            }
        }
    }

    private func copy(_ bytes: [UInt8], from fd: Int32) {
        guard var source = sources.withLock({ $0[fd] }) else { return }
        var rest = bytes[...]
        while !rest.isEmpty {
            if source.written >= maxBytes {
                rename(source.path, source.path + ".1")
                source.written = 0
            }
            let part = rest.prefix(maxBytes - source.written)
            rest = rest.dropFirst(part.count)
            let written = append(Array(part), to: source.path)
            source.written += written
            if written < part.count { break }
        }
        sources.withLock { $0[fd]?.written = source.written }
    }

    @discardableResult
    private func append(_ bytes: [UInt8], to path: String) -> Int {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    static func size(of path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// The last `bytes` of NAME.log (reaching into NAME.log.1 when the current file is shorter).
    func tail(of name: String, bytes: Int) -> [UInt8] {
        let path = path(of: name)
        var current = (try? FileIO.read(path: path, limit: 64 << 20)) ?? []
        if current.count < bytes, let older = try? FileIO.read(path: path + ".1", limit: 64 << 20) {
            current = older + current
        }
        return Array(current.suffix(bytes))
    }
}
