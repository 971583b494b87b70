import Foundation
import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

@testable import PimeshRuntime

/// The probe reads from a socket an agent controls: whatever it sends (an endless status line,
/// nothing at all), the lead reads at most 256 bytes and gives up at the timeout.
@Suite struct LivenessProberTests {
    /// A loopback listener whose one connection gets `reply` (then stays open), on a thread.
    func endpoint(_ reply: [UInt8]) throws -> (port: Int, done: @Sendable () -> Void) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 4)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            _ = reply.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // Held open: the lead must not wait for the close.
            usleep(3_000_000)
            close(client)
        }
        thread.start()
        return (port, { close(fd) })
    }

    func probe(_ port: Int) -> AgentManifest.Probe {
        AgentManifest.Probe(address: .loopback(host: "127.0.0.1", port: port), path: "/ready", settings: .init(timeout: .milliseconds(500)))
    }

    @Test func aStatusLineWithoutAReasonPhraseIsRead() throws {
        let (port, done) = try endpoint(Array("HTTP/1.1 503\r\n\r\n".utf8))
        defer { done() }
        #expect(LivenessProber.status(of: probe(port), timeout: .milliseconds(500)).status == 503)
    }

    @Test func anEndlessStatusLineIsCutAt256BytesNotBuffered() throws {
        let (port, done) = try endpoint(Array(repeating: UInt8(ascii: "A"), count: 64 * 1024))
        defer { done() }
        let answer = LivenessProber.status(of: probe(port), timeout: .milliseconds(500))
        #expect(answer.status == nil && answer.error == "not an HTTP status line")
    }

    @Test func silenceEndsAtTheTimeout() throws {
        let (port, done) = try endpoint([])
        defer { done() }
        let started = Clock.monotonicNow()
        let answer = LivenessProber.status(of: probe(port), timeout: .milliseconds(500))
        let took = Clock.monotonicNow() - started
        #expect(answer.status == nil, "\(answer)")
        // The deadline, not the agent, ends it: well before the 3 s the endpoint holds on.
        #expect(took < .milliseconds(2500), "\(took)")
        let verdict = LivenessProbe.judge(status: answer.status, latency: took, error: answer.error, timeout: .milliseconds(500))
        #expect(verdict != .live)
    }
}
