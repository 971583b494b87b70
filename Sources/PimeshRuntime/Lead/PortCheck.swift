import Glibc
import PimeshAgent
import PimeshSystem

/// One port, one lead (issue 13): before anything else starts, the lead makes sure its API and
/// heartbeat ports are free, and says which port is taken and by whom. The heartbeat socket is
/// bound without SO_REUSEADDR, which on Linux would let a second UDP socket share the port and
/// steal half the heartbeats.
enum PortCheck {
    struct Taken: Error, CustomStringConvertible {
        var what: String
        var host: String
        var port: Int
        var udp: Bool
        var holder: String?

        var description: String {
            "the \(what) port \(host):\(port)/\(udp ? "udp" : "tcp") is taken"
                + (holder.map { " by \($0)" } ?? "")
                + "; stop that process or choose another port (--\(what == "API" ? "api" : "heartbeat")-port)"
        }
    }

    /// Throws `Taken` when `port` cannot be bound now. Port 0 (any free port) is never taken.
    static func ensureFree(what: String, host: String, port: Int, udp: Bool) throws {
        guard port != 0 else { return }
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", code: errno) }
        defer { close(fd) }
        if !udp {
            // TCP only: a previous lead's connections in TIME_WAIT do not make the port taken.
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result != 0 else { return }
        let code = errno
        guard code == EADDRINUSE else { throw SocketError(operation: "bind \(host):\(port)", code: code) }
        throw Taken(what: what, host: host, port: port, udp: udp, holder: holder(port: port, udp: udp))
    }

    /// Who holds the port, as far as /proc tells this user: "a pimesh lead (pid N, data dir D)"
    /// or "pid N (comm)". nil when it cannot be seen (another user's process).
    @_optimize(size)  // cold: a port the lead cannot bind (the 25 MB budget)
    static func holder(port: Int, udp: Bool, procRoot: String = "/proc") -> String? {
        guard let inode = socketInode(port: port, table: procRoot + "/net/" + (udp ? "udp" : "tcp")) else { return nil }
        let target = "socket:[\(inode)]"
        guard let pids = try? FileIO.list(procRoot) else { return nil }
        for entry in pids {
            guard let pid = Int32(entry), pid != getpid(), let fds = try? FileIO.list("\(procRoot)/\(pid)/fd") else { continue }
            var dataDir: String?
            var holds = false
            for fd in fds {
                guard let link = readLink("\(procRoot)/\(pid)/fd/\(fd)") else { continue }
                if link == target { holds = true }
                if link.hasSuffix("/lead.lock") { dataDir = String(link.dropLast("/lead.lock".count)) }
            }
            guard holds else { continue }
            if let dataDir { return "a pimesh lead (pid \(pid), data dir \(dataDir))" }
            let name = (try? FileIO.readText(path: "\(procRoot)/\(pid)/comm")).map { String($0.filter { $0 != "\n" }) } ?? "?"
            return "pid \(pid) (\(name))"
        }
        return nil
    }

    /// The inode of the socket bound to local `port` in /proc/net/{tcp,udp} (listening for TCP).
    static func socketInode(port: Int, table: String) -> String? {
        guard let text = try? FileIO.readText(path: table) else { return nil }
        let hexPort = String(port, radix: 16, uppercase: true)
        let padded = String(repeating: "0", count: max(0, 4 - hexPort.count)) + hexPort
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 9, fields[1].hasSuffix(":" + padded) else { continue }
            // TCP: only the listener (state 0A) holds the port; UDP sockets are 07.
            if table.hasSuffix("tcp") && fields[3] != "0A" { continue }
            return String(fields[9])
        }
        return nil
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
