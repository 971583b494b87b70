import Glibc

/// The two places a lead listens: loopback TCP/UDP, or a unix socket for containers.
public enum LocalAddress: Sendable, Equatable, CustomStringConvertible {
    case loopback(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .loopback(let host, let port): "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// Calls `body` with a sockaddr for this address, or throws when it cannot be formed.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) throws -> R {
        switch self {
        case .loopback(let host, let port):
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            guard (0...65535).contains(port) else { throw SocketError(operation: "address \(self)", code: EINVAL) }
            address.sin_port = UInt16(port).bigEndian
            guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
                throw SocketError(operation: "address \(self)", code: EINVAL)
            }
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .unix(let path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(path.utf8)
            // A leading '@' names an abstract socket (systemd's NOTIFY_SOCKET may be one): its
            // first byte is NUL and its length counts no terminator.
            let isAbstract = bytes.first == UInt8(ascii: "@")
            if isAbstract { bytes[0] = 0 }
            let capacity = MemoryLayout.size(ofValue: address.sun_path)
            guard bytes.count < capacity else { throw SocketError(operation: "address \(self) (path too long)", code: ENAMETOOLONG) }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
            }
            let length = isAbstract
                ? MemoryLayout<sa_family_t>.size + bytes.count : MemoryLayout<sockaddr_un>.size
            return try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(length))
                }
            }
        }
    }

    public var family: Int32 {
        switch self {
        case .loopback: AF_INET
        case .unix: AF_UNIX
        }
    }
}

public struct SocketError: Error, CustomStringConvertible {
    public var operation: String
    public var code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(code)))"
    }
}

/// Sets send and receive timeouts so that a stuck lead cannot hang a client forever.
public func setTimeouts(_ fd: Int32, milliseconds: Int) {
    var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
}
