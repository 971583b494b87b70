import Glibc
import NIOPosix
import PimeshAgent
import PimeshSystem
import Synchronization

/// Receives heartbeats on the unix datagram socket that containers reach through a mounted
/// run dir. NIO's datagram channel closes itself on the first datagram from an unbound
/// (unnamed) unix peer, which is how most clients send, so this socket is read with plain
/// `recv` on a thread of its own. One reused buffer: nothing is allocated per datagram.
final class UnixDatagramReceiver: Sendable {
    let path: String
    private let fd: Int32
    private let stopping = Atomic<Bool>(false)
    private let pool = NIOThreadPool(numberOfThreads: 1)

    init(path: String, receiveBufferBytes: Int) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket for \(path)", code: errno) }
        var size = Int32(receiveBufferBytes)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // A short receive timeout lets the loop notice shutdown without a signal.
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let bound: Int32
        do {
            bound = try LocalAddress.unix(path: path).withSockaddr { bind(fd, $0, $1) }
        } catch {
            close(fd)
            throw error
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw SocketError(operation: "bind \(path)", code: code)
        }
        // Heartbeats carry their own HMAC, so any local process may send to this socket.
        chmod(path, 0o666)
    }

    /// Reads until `stop()`; returns when the loop has ended.
    func run(registry: AgentRegistry) async throws {
        pool.start()
        defer { close(fd) }
        try await pool.runIfActive { [self] in
            // Far larger than a datagram; MSG_TRUNC reports a longer one's full length.
            var buffer = [UInt8](repeating: 0, count: HeartbeatDatagramLimits.receiveBuffer)
            while !self.stopping.load(ordering: .relaxed) {
                let count = buffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, Int32(MSG_TRUNC)) }
                if count < 0 { continue }  // timeout or EINTR: check for shutdown and read again
                buffer.withUnsafeBytes { raw in
                    let length = min(count, raw.count)
                    _ = registry.ingest(
                        UnsafeRawBufferPointer(rebasing: raw[0..<length]), now: Clock.monotonicNow(),
                        nowWallMs: Clock.wallMilliseconds())
                }
            }
        }
        try await pool.shutdownGracefully()
        unlink(path)
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
    }
}

enum HeartbeatDatagramLimits {
    static let receiveBuffer = 2048
}
