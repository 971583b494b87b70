import Glibc

/// As OpenSSH judges its keys and its configuration: a file the lead acts on (a binary it runs,
/// a manifest that names a program and the user to run it as) and the directory it sits in
/// must belong to the lead's user or root and be writable by no one else; whoever could write
/// them could run code as the lead, as root when the lead is root.
public enum TrustedFile {
    /// Why a file whose `stat` is `info` cannot be trusted; nil when it can.
    public static func unsafeReason(_ info: stat, path: String) -> String? {
        if info.st_uid != geteuid() && info.st_uid != 0 { return "\(path) belongs to uid \(info.st_uid), not to the lead's user or root" }
        if info.st_mode & 0o022 != 0 { return "\(path) is writable by group or others (mode \(String(info.st_mode & 0o7777, radix: 8)))" }
        return nil
    }

    /// The same for `path` itself, a symlink judged as the link (lstat) unless `followingLinks`.
    public static func unsafeReason(_ path: String, followingLinks: Bool = false) -> String? {
        var info = stat()
        guard (followingLinks ? stat(path, &info) : lstat(path, &info)) == 0 else { return "\(path): \(String(cString: strerror(errno)))" }
        return unsafeReason(info, path: path)
    }

    public struct Untrusted: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads a regular file the lead will act on, refused unless it can be trusted.
    public static func read(path: String, limit: Int) throws -> [UInt8] {
        let (bytes, status) = try FileIO.readWithStatus(path: path, limit: limit)
        if let why = unsafeReason(status, path: path) {
            throw Untrusted(description: "not trusted: \(why); run `chown root \(path)` and `chmod go-w \(path)`")
        }
        return bytes
    }

    /// Why the directory of such files cannot be used: it cannot be read, or others could write
    /// into it. Nil when it can, or when it does not exist (`missing`).
    public static func directoryProblem(_ directory: String) -> (reason: String, missing: Bool)? {
        var info = stat()
        guard stat(directory, &info) == 0 else {
            let missing = errno == ENOENT
            return ("cannot read \(directory): \(String(cString: strerror(errno)))", missing)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { return ("\(directory) is not a directory", false) }
        if let why = unsafeReason(info, path: directory) { return (why + "; run `chown root \(directory)` and `chmod go-w \(directory)`", false) }
        return nil
    }
}
