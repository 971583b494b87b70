import Glibc
import Logging
import PimeshSystem

/// What only the lead may read (issue 12): the data dir holds every agent's HMAC secret in
/// pimesh.db, the tokens and the node key. Secrets are refused when their modes are loose, as
/// OpenSSH refuses a private key others can read; the lead's own dirs and database files are
/// tightened with a log line, since the lead created them and nothing else should use them.
public enum PrivateFiles {
    public struct LooseModeError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The modes the lead keeps: data dir 0700, run dir 0750 (its group reaches `api.sock`).
    public static let dataDirMode: mode_t = 0o700
    public static let runDirMode: mode_t = 0o750

    /// Sets umask 077 for everything the lead creates from here on, then makes or tightens
    /// the data and run dirs and the database files.
    public static func prepare(dataDir: String, runDir: String, logger: Logger) throws {
        umask(0o077)
        try FileIO.makeDirectories(dataDir, mode: dataDirMode)
        try FileIO.makeDirectories(runDir, mode: runDirMode)
        try checkPlantable(dataDir: dataDir, runDir: runDir)
        tighten(dataDir, to: dataDirMode, logger: logger)
        tighten(runDir, to: runDirMode, logger: logger)
        tightenDatabase(dataDir + "/pimesh.db", logger: logger)
    }

    /// Whoever could write into the data or run dir could have planted a symlink there
    /// (`lead.lock`, `run`, `logs/NAME.log`) that the lead, as root, would follow, or database
    /// files of their own that they keep open: refused, naming the path, as OpenSSH refuses a
    /// home directory others may write, rather than tightened over what may be in it. The two
    /// dirs themselves may be symlinks (the operator named them); what is inside may not.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func checkPlantable(dataDir: String, runDir: String) throws {
        var problems = [dataDir, runDir].compactMap { TrustedFile.unsafeReason($0, followingLinks: true) }
        var owner = stat()
        // A lead started by hand as root on a Pi's dirs (they are the `pimesh` user's): the fix
        // is to run it as that user, not to take the dirs from the lead of the unit.
        let theirs = stat(dataDir, &owner) == 0 && owner.st_uid != geteuid() && owner.st_uid != 0 ? owner.st_uid : nil
        let directories = [runDir + "/logs"] + ["spool", "incidents", "manifest-history", "releases", "rolled-back", ".rollback-restore"].map { dataDir + "/" + $0 }
        for inside in directories + ["", "-wal", "-shm"].map({ dataDir + "/pimesh.db" + $0 }) {
            var info = stat()
            guard lstat(inside, &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFLNK {
                problems.append("\(inside) is a symbolic link")
            } else if info.st_uid != geteuid() && info.st_uid != 0 {
                problems.append("\(inside) belongs to uid \(info.st_uid), not to the lead's user or root")
            } else if info.st_mode & S_IFMT == S_IFDIR, let why = TrustedFile.unsafeReason(info, path: inside) {
                problems.append(why)
            }
        }
        guard let first = problems.first else { return }
        throw LooseModeError(
            description: "refusing to start: \(first); anyone who could write there could have planted a link the lead would follow. "
                + (theirs.map { "Run the lead as uid \($0), the data dir's owner (on a Pi: `systemctl start pimesh`), or check what is in it, then give it " }
                    ?? "Check what is in it, then give it ")
                + "to the lead's user (uid \(geteuid())) alone: `chown` it and `chmod go-w` it")
    }

    /// A SQLite database with its WAL and shared-memory files: 0600.
    public static func tightenDatabase(_ path: String, logger: Logger) {
        for suffix in ["", "-wal", "-shm"] { tighten(path + suffix, to: 0o600, logger: logger) }
    }

    /// Sets `mode` on a file or directory this process owns and made, saying so in the log;
    /// what belongs to another user is left for the checks that refuse it.
    public static func tighten(_ path: String, to mode: mode_t, logger: Logger) {
        var info = stat()
        guard stat(path, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o777 != mode else { return }
        let before = info.st_mode & 0o777
        guard chmod(path, mode) == 0 else { return }
        logger.notice(
            "set the mode pimesh keeps",
            metadata: ["path": "\(path)", "was": "\(octal(before))", "now": "\(octal(mode))"])
    }

    /// A secret file (token, node key) must belong to the lead's user and be readable by it
    /// alone; otherwise the lead does not start, and says how to fix it.
    public static func checkSecret(_ path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { return }
        if info.st_uid != geteuid() {
            throw LooseModeError(
                description: "\(path) belongs to uid \(info.st_uid), not to the lead's user (uid \(geteuid())): "
                    + "run `chown \(geteuid()) \(path)` or start the lead as its owner")
        }
        let mode = info.st_mode & 0o777
        if mode & 0o077 != 0 {
            throw LooseModeError(
                description: "\(path) is readable by others (mode \(octal(mode))); it holds a secret: run `chmod 600 \(path)`")
        }
    }

    public static func octal(_ mode: mode_t) -> String {
        "0" + String(mode, radix: 8)
    }
}
