import Glibc

/// Small, whole-file reads and atomic writes with POSIX calls: no Foundation on the Pi binary.
public enum FileIO {
    public struct Failure: Error, CustomStringConvertible {
        public var path: String
        public var operation: String
        public var errno: Int32
        /// Said instead of errno's text when errno does not say it.
        public var reason: String?

        public init(path: String, operation: String, errno: Int32, reason: String? = nil) {
            self.path = path
            self.operation = operation
            self.errno = errno
            self.reason = reason
        }

        public var description: String {
            "\(operation) \(path): \(reason ?? String(cString: strerror(errno)))"
        }
    }

    /// What a file that is not a regular one is, in words.
    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFDIR: "a directory"
        default: "a special file"
        }
    }

    /// Opens a regular file for reading, and its `stat`; anything else is refused before a byte
    /// is read (see `read`). The caller closes the descriptor.
    public static func openRegular(path: String) throws -> (fd: Int32, status: stat) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw Failure(path: path, operation: "open", errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw Failure(path: path, operation: "stat", errno: code)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw Failure(path: path, operation: "read", errno: EINVAL, reason: "\(kind(of: info.st_mode)), not a regular file")
        }
        return (fd, info)
    }

    /// Reads a regular file whole. Anything else is refused before a byte is read: opening a
    /// FIFO for reading, or reading one, blocks until someone writes to it, and a FIFO dropped
    /// into agents.d once hung every thread that rescanned it, and with them the lead.
    public static func read(path: String, limit: Int = 16 << 20) throws -> [UInt8] {
        try readWithStatus(path: path, limit: limit).bytes
    }

    /// `read`, and the `stat` of the file it read (of the file itself, not of a name that a
    /// rename may have moved meanwhile): for checks of its owner and mode.
    public static func readWithStatus(path: String, limit: Int = 16 << 20) throws -> (bytes: [UInt8], status: stat) {
        let (fd, info) = try openRegular(path: path)
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit { throw Failure(path: path, operation: "read (file too large)", errno: EFBIG) }
        }
        return (result, info)
    }

    public static func readText(path: String) throws -> String {
        String(decoding: try read(path: path), as: UTF8.self)
    }

    /// Writes through a temporary file, fsync and rename, so readers see the old or the new
    /// content and never a torn one, even after a power cut. `replacing` false: refused when
    /// `path` exists (link, not rename), for a file that must never be overwritten.
    ///
    /// The temporary name is random and created here (O_EXCL, O_NOFOLLOW): in a directory
    /// others may write, a name known in advance (`.tmp.<pid>`) could be their link to another
    /// file, or their own file, which they could then read.
    @_optimize(size)  // a few times a minute at most (the 25 MB budget)
    public static func writeAtomically(path: String, bytes: [UInt8], mode: mode_t = 0o644, replacing: Bool = true) throws {
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<8 {
            temporary = path + ".tmp." + String(UInt64.random(in: .min ... .max), radix: 16)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw Failure(path: path, operation: "create a temporary file beside", errno: errno) }
        do {
            try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        fchmod(fd, mode)
        if fsync(fd) != 0 {
            let code = errno
            close(fd)
            unlink(temporary)
            throw Failure(path: path, operation: "fsync", errno: code)
        }
        close(fd)
        let placed = replacing ? rename(temporary, path) : link(temporary, path)
        let code = errno
        if placed != 0 || !replacing { unlink(temporary) }
        guard placed == 0 else {
            let reason: String? =
                replacing ? nil
                : code == EEXIST ? "it exists; it is never overwritten"
                : code == EPERM ? "this file system has no hard links (vfat?): write it elsewhere and copy it" : nil
            throw Failure(path: path, operation: replacing ? "rename" : "create", errno: code, reason: reason)
        }
        syncDirectory(of: path)
    }

    /// Writes all of `bytes`; a failure keeps errno, so that a full disk (ENOSPC) can be told
    /// from a broken one.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let count = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(path: path, operation: "write", errno: errno)
            }
            offset += count
        }
    }

    /// Makes a rename durable: the directory entry itself must reach the disk.
    public static func syncDirectory(of path: String) {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// Creates a directory and its parents, like `mkdir -p`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw Failure(path: current, operation: "mkdir", errno: errno)
            }
        }
    }

    /// The names in a directory, without `.` and `..`.
    public static func list(_ path: String) throws -> [String] {
        guard let directory = opendir(path) else { throw Failure(path: path, operation: "opendir", errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// A regular file this process may execute.
    public static func isExecutable(_ path: String) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return false }
        return access(path, X_OK) == 0
    }

    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// Whether a name exists at all: a symbolic link counts even when it leads nowhere.
    public static func linkExists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    public static func remove(_ path: String) {
        unlink(path)
    }

    /// Removes `path` and, when it is a directory, everything under it. Symbolic links are
    /// removed, never followed, so a link planted in a scratch dir cannot lead outside it.
    public static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in (try? list(path)) ?? [] { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
