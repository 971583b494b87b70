import Glibc
import PimeshAgent
import PimeshSystem

/// One lead per data dir: an exclusive `flock` on `<data_dir>/lead.lock`, held for the life of
/// the process. The kernel releases it when the lead dies, `kill -9` included, so a stale
/// lead.json never blocks a restart.
final class DataDirLock {
    private let fd: Int32

    struct Held: Error, CustomStringConvertible {
        var dataDir: String
        var pid: Int32?

        var description: String {
            let who = pid.map { "a lead (pid \($0))" } ?? "another lead"
            return "\(who) already runs with data dir \(dataDir); stop it first or use another --data-dir"
        }
    }

    init(dataDir: String) throws {
        let path = dataDir + "/lead.lock"
        fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SocketError(operation: "open \(path)", code: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            // deinit closes fd: an init that throws once every property is set still runs it,
            // and a second close could take a descriptor another thread has opened since.
            let code = errno
            if code == EWOULDBLOCK {
                throw Held(dataDir: dataDir, pid: (try? LeadDiscovery.endpoint(dataDir: dataDir))?.pid)
            }
            throw SocketError(operation: "lock \(path)", code: code)
        }
    }

    deinit {
        close(fd)
    }
}
