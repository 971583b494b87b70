import CDatagram
import Glibc
import NIOPosix
import PimeshSystem
import Synchronization

/// Where an agent's heartbeats come from and its work datagrams go: an IPv4 address and port,
/// both in network byte order as the kernel gives them. The heartbeat socket is loopback IPv4
/// only (ConfigLoader.loopbackHost), so this is all a peer can be.
struct DatagramPeer: Hashable, Sendable {
    var address: UInt32
    var port: UInt16

    init(_ raw: sockaddr_in) {
        address = raw.sin_addr.s_addr
        port = raw.sin_port
    }

    init(host: String, port: Int) throws {
        var raw = sockaddr_in()
        try LocalAddress.loopback(host: host, port: port).withSockaddr { pointer, _ in
            pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { raw = $0.pointee }
        }
        self.init(raw)
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var raw = sockaddr_in()
        raw.sin_family = sa_family_t(AF_INET)
        raw.sin_port = port
        raw.sin_addr.s_addr = address
        return withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// The lead's UDP heartbeat socket, read with `recvmmsg` on a thread of its own; work
/// datagrams leave through it, so that an agent receives them on the socket its heartbeats
/// come from and holds no connection for its work (docs/protocol.md).
///
/// Not an NIO datagram channel: that formatted every datagram's source address as text
/// (`inet_ntop`, `sprintf`), wrapped each in an envelope and re-armed epoll for each read,
/// about a tenth of the lead's CPU at 1,000 agents (perf, issue 14).
///
/// Reads are coalesced: after a read the socket is left alone for `coalescing`, so that the
/// heartbeats of that time are taken in one batch. Woken for every datagram, a lead with
/// 1,000 agents switched in 4,000 times a second, a fifth of its CPU in the scheduler alone.
/// A heartbeat waits at most that long, which the phi detector's spread absorbs; a quiet
/// socket is read as soon as a datagram comes. Under heavy traffic the pause shortens so that
/// a batch stays near `batchAim` datagrams: a Pi's default `net.core.rmem_max` holds only some
/// 400–550 heartbeats in the socket (review).
final class HeartbeatSocket: Sendable {
    /// Large enough for a burst from 1,000 agents between two reads on a loaded Pi.
    static let receiveBufferBytes = 1 << 20
    /// Datagrams one `recvmmsg` takes.
    static let datagramsPerRead = 32
    /// `recvmmsg` calls per wake-up: 512 heartbeats, 5 ms of 10,000 agents'.
    static let readsPerWake = 16
    /// Room for each datagram of a read: above the longest heartbeat (80 bytes), so that a
    /// longer one arrives cut to this length and is still dropped as too long, not as short.
    static let slotBytes = 256
    static let coalescing: Duration = .milliseconds(10)
    static let batchAim = 128
    /// How often a quiet socket's thread looks for shutdown.
    static let stopCheckMs: Int32 = 200

    /// The pause after a read of `batch` datagrams: `coalescing`, shortened in proportion above
    /// `batchAim`, never below a millisecond.
    static func pause(after batch: Int) -> Duration {
        guard batch > batchAim else { return coalescing }
        return max(.milliseconds(1), coalescing * batchAim / batch)
    }

    let port: Int
    private let fd: Int32
    private let stopping = Atomic<Bool>(false)
    private let pool = NIOThreadPool(numberOfThreads: 1)

    /// Binds `host:port` (port 0: the kernel picks one, read back into `port`).
    static func bind(host: String, port: Int, receiveBufferBytes: Int = receiveBufferBytes) throws -> HeartbeatSocket {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket for heartbeats", code: errno) }
        do {
            var size = Int32(receiveBufferBytes)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            // No SO_REUSEADDR: on Linux it would let a second lead's UDP socket share this port.
            let address = LocalAddress.loopback(host: host, port: port)
            guard try address.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0 else {
                throw SocketError(operation: "bind heartbeat socket \(address)", code: errno)
            }
            var bound = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            guard named == 0 else { throw SocketError(operation: "getsockname of the heartbeat socket", code: errno) }
            return HeartbeatSocket(fd: fd, port: Int(UInt16(bigEndian: bound.sin_port)))
        } catch {
            close(fd)
            throw error
        }
    }

    private init(fd: Int32, port: Int) {
        self.fd = fd
        self.port = port
    }

    /// Closed only here, when no one holds it: a send can never reach a reused descriptor.
    deinit {
        close(fd)
    }

    /// Hands each datagram's bytes, straight from the receive buffer, and its source to
    /// `receive` until `stop()`; returns when the loop has ended.
    /// A cancelled task stops the loop too, and the thread ends either way.
    func run(_ receive: @escaping @Sendable (UnsafeRawBufferPointer, DatagramPeer) -> Void) async throws {
        pool.start()
        do {
            try await withTaskCancellationHandler {
                try await pool.runIfActive { [self] in readLoop(receive) }
            } onCancel: {
                stop()
            }
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        try await pool.shutdownGracefully()
    }

    private func readLoop(_ receive: (UnsafeRawBufferPointer, DatagramPeer) -> Void) {
        let count = Self.datagramsPerRead
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: count * Self.slotBytes, alignment: 16)
        let sources = UnsafeMutablePointer<sockaddr_in>.allocate(capacity: count)
        let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
        defer {
            buffer.deallocate()
            sources.deallocate()
            lengths.deallocate()
        }
        var readable = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !stopping.load(ordering: .relaxed) {
            guard poll(&readable, 1, Self.stopCheckMs) > 0 else { continue }
            var batch = 0
            for _ in 0..<Self.readsPerWake {
                // EAGAIN (nothing left) or any error ends this batch only.
                let received = Int(pimesh_recv_datagrams(fd, buffer, Self.slotBytes, UInt32(count), sources, lengths))
                guard received > 0 else { break }
                for i in 0..<received {
                    let length = min(Int(lengths[i]), Self.slotBytes)
                    receive(UnsafeRawBufferPointer(start: buffer + i * Self.slotBytes, count: length), DatagramPeer(sources[i]))
                }
                batch += received
                if received < count { break }
            }
            // A full batch may have left more in the socket: read on at once.
            if batch < count * Self.readsPerWake { Self.sleep(Self.pause(after: batch)) }
        }
    }

    private static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }

    /// Sends one datagram without waiting: one the kernel cannot take now is lost, which is
    /// what retransmission is for.
    func send(_ bytes: [UInt8], to peer: DatagramPeer) {
        bytes.withUnsafeBytes { raw in
            _ = peer.withSockaddr { sendto(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL), $0, $1) }
        }
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
    }
}
