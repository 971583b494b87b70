import CSpawn
import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// Copies supervised agents' stdout/stderr into `<run_dir>/logs/NAME.log` on one thread that
/// polls every pipe. Each log is capped: past `maxBytes` it is renamed to NAME.log.1 (the
/// previous .1 is dropped), so an agent's logs never take more than twice the cap and never
/// touch the SD card when the run dir is tmpfs.
///
/// Cheap under a flood (issue 13): the log file stays open, each read (up to 256 KiB) is one
/// write, and each agent may log `ratePerSecond` bytes a second. Past that its pipe is not read
/// until the next second; then what waits in it (at most the FIFO's 1 MiB) is dropped and the
/// log says how much. An agent that writes as fast as it can is thus slowed by its full pipe,
/// and costs the lead a few reads a second instead of a core.
final class AgentLogPump: Sendable {
    private struct Source {
        var fd: Int32
        var name: String
        var path: String
        /// The open log file; -1 when it could not be opened.
        var out: Int32
        var written: Int
        /// Its process is gone but writers may remain (an adopted agent's FIFO, whose reader
        /// sees no hang-up): read what is buffered, then close.
        var finishing = false
        /// Bytes still allowed in the current one-second window, and when it began.
        var allowance: Int
        var windowStart: Instant
        /// Not read until then: the agent used up its allowance.
        var pausedUntil: Instant?
        /// The next byte begins a line, which gets its time and stream first.
        var atLineStart = true
    }

    private let directory: String
    private let maxBytes: Int
    private let ratePerSecond: Int
    // The noncopyable members are set after the last throw: swift 6.3.1's CopyPropagation
    // crashes (-O) destroying a partly initialised Atomic when the init throws.
    private let sources: Mutex<[Int32: Source]>
    /// A pipe that wakes the poll when a new source is attached: [read, write].
    private let wake: [Int32]
    private let running: Atomic<Bool>

    init(directory: String, maxBytes: Int, ratePerSecond: Int = 256 * 1024) throws {
        self.directory = directory
        self.maxBytes = max(4096, maxBytes)
        self.ratePerSecond = max(1024, ratePerSecond)
        try FileIO.makeDirectories(directory, mode: 0o750)
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw ChildProcess.SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        for fd in ends {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        }
        wake = ends
        sources = Mutex([:])
        running = Atomic(false)
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
        let reader = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
        guard reader >= 0 else { throw ChildProcess.SpawnError(description: "open \(path): \(String(cString: strerror(errno)))") }
        let childEnd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
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
        let reader = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)
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
    /// A heal command's header line carries its arguments, from a manifest: cut past this.
    static let maxHeaderBytes = 1024

    func attach(fd: Int32, name: String, header: String) {
        let path = path(of: name)
        var out = Self.openLog(path)
        var written = Self.size(of: path)
        let text = header.utf8.count > Self.maxHeaderBytes ? String(decoding: header.utf8.prefix(Self.maxHeaderBytes), as: UTF8.self) + "…" : header
        let headerLine = Array((AgentLogLine.stamp(epochMs: Clock.wallMilliseconds(), stream: .lead) + "--- " + text + " ---\n").utf8)
        // The header goes in whole, and within the cap: into a new file when it would not fit.
        if written > 0 && written + headerLine.count > maxBytes {
            if out >= 0 { close(out) }
            rename(path, path + ".1")
            out = Self.openLog(path)
            written = 0
        }
        written += Self.writeAll(headerLine, to: out)
        let source = Source(
            fd: fd, name: name, path: path, out: out, written: written, allowance: ratePerSecond, windowStart: Clock.monotonicNow())
        let replaced = sources.withLock { sources -> Source? in
            let old = sources[fd]
            sources[fd] = source
            return old
        }
        if let replaced, replaced.out >= 0 { close(replaced.out) }
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

    /// The read buffer is mapped, not allocated: a page of it costs memory only once a read has
    /// filled it, so agents that write a line now and then leave nearly all of it untouched.
    /// A zeroed array took all 256 KiB of the lead's private memory from the first
    /// supervised agent on (docs/benchmarks.md).
    static let readBufferBytes = 256 * 1024

    private func loop() {
        guard let mapped = mmap(nil, Self.readBufferBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            mapped != MAP_FAILED
        else {
            running.store(false, ordering: .releasing)
            return
        }
        defer { munmap(mapped, Self.readBufferBytes) }
        let buffer = UnsafeMutableRawBufferPointer(start: mapped, count: Self.readBufferBytes)
        while true {
            let now = Clock.monotonicNow()
            resumePaused(now: now, buffer: buffer)
            let (watched, nextResume) = sources.withLock { sources -> ([Int32], Instant?) in
                let active = sources.values.filter { $0.pausedUntil == nil }.map(\.fd)
                return (active, sources.values.compactMap(\.pausedUntil).min())
            }
            var fds = watched.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            fds.append(pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0))
            // A new source writes to `wake`; a paused one is due at `nextResume`.
            let timeoutMs = nextResume.map { Int32(clamping: max(1, Int64((($0 - now).milliseconds).rounded(.up)))) } ?? -1
            let ready = poll(&fds, nfds_t(fds.count), timeoutMs)
            if ready < 0 && errno != EINTR { return }
            for entry in fds where entry.revents != 0 {
                if entry.fd == wake[0] {
                    var drain = [UInt8](repeating: 0, count: 64)
                    _ = read(wake[0], &drain, 64)
                    continue
                }
                guard let allowance = sources.withLock({ $0[entry.fd]?.allowance }) else { continue }
                let count = read(entry.fd, buffer.baseAddress, min(buffer.count, max(1, allowance)))
                if count > 0 {
                    copy(UnsafeRawBufferPointer(buffer), count: count, from: entry.fd)
                    sources.withLock { sources in
                        guard var source = sources[entry.fd] else { return }
                        source.allowance -= count
                        if source.allowance <= 0 { source.pausedUntil = source.windowStart + .seconds(1) }
                        sources[entry.fd] = source
                    }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    // EOF: the child and everything it started closed the pipe.
                    remove(entry.fd)
                }
            }
            for fd in sources.withLock({ $0.values.filter(\.finishing).map(\.fd) }) {
                while true {
                    let count = read(fd, buffer.baseAddress, buffer.count)
                    guard count > 0 else { break }
                    copy(UnsafeRawBufferPointer(buffer), count: count, from: fd)
                }
                remove(fd)
            }
        }
    }

    /// Sources whose pause ended: what their agent wrote meanwhile beyond the allowance is
    /// dropped (read and discarded), the log says how much, and a new window begins.
    private func resumePaused(now: Instant, buffer: UnsafeMutableRawBufferPointer) {
        let due = sources.withLock { sources in sources.values.filter { $0.pausedUntil.map { $0 <= now } ?? false }.map(\.fd) }
        for fd in due {
            var dropped = 0
            while true {
                let count = read(fd, buffer.baseAddress, buffer.count)
                guard count > 0 else { break }
                dropped += count
                if dropped >= Int(Self.fifoBytes) * 2 { break }  // a writer faster than this read loop
            }
            let out = sources.withLock { sources -> Int32? in
                sources[fd]?.pausedUntil = nil
                sources[fd]?.allowance = ratePerSecond
                sources[fd]?.windowStart = now
                return sources[fd]?.out
            }
            if dropped > 0, out != nil {
                let note = Array("--- \(dropped) bytes dropped: this agent wrote more than \(ratePerSecond / 1024) KiB/s (supervision.log_rate_kb_s) ---\n".utf8)
                note.withUnsafeBytes { copy($0, count: note.count, from: fd, stream: .lead) }
            }
        }
    }

    private func remove(_ fd: Int32) {
        let removed = sources.withLock { $0.removeValue(forKey: fd) }
        close(fd)
        if let removed, removed.out >= 0 { close(removed.out) }
    }

    /// Writes what an agent wrote into its log, each line after its time and stream
    /// (AgentLogLine), so that `pimesh logs --since` and `--json` can tell when it was written.
    private func copy(_ bytes: UnsafeRawBufferPointer, count: Int, from fd: Int32, stream: AgentLogLine.Stream = .out) {
        guard var source = sources.withLock({ $0[fd] }) else { return }
        let stamp = Array(AgentLogLine.stamp(epochMs: Clock.wallMilliseconds(), stream: stream).utf8)
        var stamped: [UInt8] = []
        stamped.reserveCapacity(count + stamp.count * 4)
        var midLine = !source.atLineStart
        // A note of the lead's own never continues an agent's unfinished line.
        if stream == .lead && !source.atLineStart { stamped.append(10) }
        var atLineStart = stream == .lead ? true : source.atLineStart
        // Whole lines at a time: a flooding agent's output is copied, not walked byte by byte.
        var start = 0
        while start < count {
            let end = bytes[start..<count].firstIndex(of: 10).map { $0 + 1 } ?? count
            if atLineStart { stamped += stamp }
            stamped += bytes[start..<end]
            atLineStart = bytes[end - 1] == 10
            start = end
        }
        source.atLineStart = atLineStart
        var offset = 0
        while offset < stamped.count {
            if source.written >= maxBytes {
                // A line cut here ends in the old file (one byte past maxBytes) and goes on,
                // stamped again, in the new one: a log never starts with bytes the agent chose,
                // which could pass for a line of the lead's.
                if midLine { Self.writeAll([10], to: source.out) }
                if source.out >= 0 { close(source.out) }
                rename(source.path, source.path + ".1")
                source.out = Self.openLog(source.path)
                source.written = 0
                if midLine {
                    if stamped[offset] == 10 { offset += 1 } else { stamped.insert(contentsOf: stamp, at: offset) }
                    midLine = false
                    if offset == stamped.count { break }
                }
            }
            let part = min(stamped.count - offset, maxBytes - source.written)
            let written = stamped.withUnsafeBytes { buffer in
                source.out >= 0 ? Glibc.write(source.out, buffer.baseAddress! + offset, part) : -1
            }
            guard written > 0 else { break }
            midLine = stamped[offset + written - 1] != 10
            source.written += written
            offset += written
        }
        let updated = source
        sources.withLock { sources in
            sources[fd]?.written = updated.written
            sources[fd]?.out = updated.out
            sources[fd]?.atLineStart = updated.atLineStart
        }
    }

    private static func openLog(_ path: String) -> Int32 {
        open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0o640)
    }

    @discardableResult
    private static func writeAll(_ bytes: [UInt8], to fd: Int32) -> Int {
        guard fd >= 0 else { return 0 }
        return max(0, bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) })
    }

    static func size(of path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// The last `bytes` of the agent's output, reaching into the rotated file when the current
    /// one is shorter. Reads only what it returns.
    func tail(of name: String, bytes: Int) -> [UInt8] {
        let path = path(of: name)
        let current = Self.readTail(path: path, bytes: bytes)
        guard current.count < bytes else { return current }
        return Self.readTail(path: path + ".1", bytes: bytes - current.count) + current
    }

    private static func readTail(path: String, bytes: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
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
