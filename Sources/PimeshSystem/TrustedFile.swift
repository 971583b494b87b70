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
}
