import CSpawn
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
        var name: String
        var path: String
        var written: Int
        /// Its process is gone but writers may remain (an adopted agent's FIFO, whose reader
        /// sees no hang-up): read what is buffered, then close.
        var finishing = false
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

    static let fifoBytes: Int32 = 1 << 20

    func fifoPath(of name: String) -> String {
        directory + "/" + name + ".out"
    }

    /// A fresh FIFO for a supervised agent's stdout+stderr, in place of a pipe: it outlives the
    /// lead, so an agent keeps running (and its output waits in the FIFO's buffer) while a
    /// killed lead restarts, and the next lead reads on from the same path (issue 12). The
    /// child's end is opened read-write: a FIFO with a reader never raises SIGPIPE in its
    /// writer, so the agent does not die of the lead's death. Returns the lead's read end
    /// (attach it) and the child's end (pass it to spawn, then close it).
    func makeFIFO(for name: String) throws -> (reader: Int32, childEnd: Int32) {
        let path = fifoPath(of: name)
        unlink(path)
        guard mkfifo(path, 0o600) == 0 else { throw ChildProcess.SpawnError(description: "mkfifo \(path): \(String(cString: strerror(errno)))") }
        let reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard reader >= 0 else { throw ChildProcess.SpawnError(description: "open \(path): \(String(cString: strerror(errno)))") }
        let childEnd = open(path, O_RDWR | O_CLOEXEC)
        guard childEnd >= 0 else {
            close(reader)
            throw ChildProcess.SpawnError(description: "open \(path): \(String(cString: strerror(errno)))")
        }
        // Room for what an agent writes while no lead reads (a restart, a lead that refuses to
        // start): 1 MiB where the user's pipe quota allows, else the kernel's 64 KiB.
        _ = pimesh_set_pipe_size(childEnd, Self.fifoBytes)
        return (reader, childEnd)
    }

    /// Reads an adopted agent's output again from its FIFO; false when there is none.
    @discardableResult
    func reattach(name: String, header: String) -> Bool {
        let path = fifoPath(of: name)
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFIFO, info.st_uid == geteuid() else { return false }
        let reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard reader >= 0 else { return false }
        attach(fd: reader, name: name, header: header)
        return true
    }

    /// The process writing to NAME's log is gone: copy what it left and stop reading.
    func finish(name: String) {
        sources.withLock { sources in
            for (fd, source) in sources where source.name == name { sources[fd]?.finishing = true }
        }
        var one: UInt8 = 1
        _ = write(wake[1], &one, 1)
    }

    /// Starts copying `fd` (a pipe's read end, owned by the pump from now on) into NAME.log,
    /// after a header line that marks the start.
    func attach(fd: Int32, name: String, header: String) {
        let path = path(of: name)
        var written = Self.size(of: path)
        let line = Array(("--- " + header + " ---\n").utf8)
        written += append(line, to: path)
        sources.withLock { $0[fd] = Source(fd: fd, name: name, path: path, written: written) }
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
            let ready = poll(&fds, nfds_t(fds.count), -1)  // a new source writes to `wake`: no timeout needed
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
            for fd in sources.withLock({ $0.values.filter(\.finishing).map(\.fd) }) {
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    guard count > 0 else { break }
                    copy(Array(buffer[0..<count]), from: fd)
                }
                sources.withLock { _ = $0.removeValue(forKey: fd) }
                close(fd)
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
    /// The last `bytes` of the agent's output, reaching into the rotated file when the current
    /// one is shorter. Reads only what it returns.
    func tail(of name: String, bytes: Int) -> [UInt8] {
        let path = path(of: name)
        let current = Self.readTail(path: path, bytes: bytes)
        guard current.count < bytes else { return current }
        return Self.readTail(path: path + ".1", bytes: bytes - current.count) + current
    }

    private static func readTail(path: String, bytes: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0, bytes > 0 else { return [] }
        let count = Int(min(Int64(bytes), Int64(info.st_size)))
        var result = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = result.withUnsafeMutableBytes { buffer in
                pread(fd, buffer.baseAddress! + filled, count - filled, off_t(Int64(info.st_size) - Int64(count) + Int64(filled)))
            }
            if n <= 0 { break }
            filled += n
        }
        return Array(result.prefix(filled))
    }
}
