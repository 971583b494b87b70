import Glibc
import PimeshSystem

/// A minimal HTTP/1.1 client for the lead's local API: one request per connection, blocking,
/// with timeouts. Agents and the CLI need nothing more, and it keeps NIO out of agent processes.
public struct LoopbackHTTPClient: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]

        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public let address: LocalAddress
    public let timeoutMs: Int

    public init(address: LocalAddress, timeoutMs: Int = 5000) {
        self.address = address
        self.timeoutMs = timeoutMs
    }

    public func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> Response {
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", code: errno) }
        defer { close(fd) }
        setTimeouts(fd, milliseconds: timeoutMs)
        try address.withSockaddr { pointer, length in
            guard connect(fd, pointer, length) == 0 else {
                throw SocketError(operation: "connect to \(address)", code: errno)
            }
        }
        let host = if case .loopback(let h, let p) = address { "\(h):\(p)" } else { "localhost" }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
        }
        head += "\r\n"
        try sendAll(fd, Array(head.utf8) + body)
        return try parse(readAll(fd))
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("send to", errno)
            }
            offset += n
        }
    }

    private func readAll(_ fd: Int32) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("receive from", errno)
            }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
            if result.count > 64 << 20 { throw SocketError(operation: "receive from \(address) (response over 64 MiB)", code: EFBIG) }
        }
    }

    /// A socket timeout (SO_RCVTIMEO, SO_SNDTIMEO) reads as EAGAIN, which says nothing of the
    /// lead: named for what it is.
    private func failure(_ operation: String, _ code: Int32) -> SocketError {
        guard code == EAGAIN || code == EWOULDBLOCK else { return SocketError(operation: "\(operation) \(address)", code: code) }
        return SocketError(operation: "\(operation) \(address): no progress within \(timeoutMs) ms (the lead is stopped, overloaded or not a lead)", code: ETIMEDOUT)
    }

    struct MalformedResponse: Error, CustomStringConvertible {
        var reason: String
        var description: String { "malformed HTTP response from the lead: \(reason)" }
    }

    private func parse(_ raw: [UInt8]) throws -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = raw.firstRange(of: separator) else { throw MalformedResponse(reason: "no end of headers") }
        let head = String(decoding: raw[..<headEnd.lowerBound], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw MalformedResponse(reason: "bad status line")
        }
        var body = Array(raw[headEnd.upperBound...])
        var chunked = false
        for line in lines.dropFirst() {
            let lower = line.lowercased()
            if lower.hasPrefix("content-length:"), let length = Int(lower.dropFirst(15).trimmingWhitespace()), length <= body.count {
                body = Array(body[..<length])
            }
            if lower.hasPrefix("transfer-encoding:") && lower.contains("chunked") { chunked = true }
        }
        if chunked { body = try dechunk(body) }
        return Response(status: status, body: body)
    }

    private func dechunk(_ bytes: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while index < bytes.count {
            guard let lineEnd = bytes[index...].firstRange(of: [13, 10]) else { throw MalformedResponse(reason: "bad chunk") }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingWhitespace(), radix: 16) else { throw MalformedResponse(reason: "bad chunk size") }
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard size <= bytes.count - start else { throw MalformedResponse(reason: "truncated chunk") }
            out.append(contentsOf: bytes[start..<(start + size)])
            index = start + size + 2
        }
        return out
    }
}
