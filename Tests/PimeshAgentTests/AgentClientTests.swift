import Crypto
import Glibc
import PimeshCore
import PimeshSystem
import Testing
import PimeshTestSupport

@testable import PimeshAgent

@Suite struct HeartbeatTagTests {
    let credentials = AgentCredentials(
        id: AgentID("0123abcd-4567-4890-a1b2-c3d4e5f60718")!, secret: "000102030405060708090a0b0c0d0e0f", name: "a",
        agentClass: .local, capabilities: [], heartbeat: .init(host: "127.0.0.1", port: 1, unixSocket: nil, intervalMs: 250))

    /// The tag is computed from precomputed pad states, not by swift-crypto's HMAC: it must be
    /// HMAC-SHA256 for every key length (short, one block, longer keys hashed first).
    @Test(arguments: [0, 1, 16, 32, 63, 64, 65, 100, 131])
    func tagIsHMACSHA256ForAnyKeyLength(keyLength: Int) {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let message = (0..<Int.random(in: 0...200, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let expected = Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
            let tag = message.withUnsafeBytes { HeartbeatTag(secret: key).withTag(of: $0) { Array($0) } }
            #expect(tag == expected)
        }
    }

    /// RFC 4231 test case 2 (key "Jefe"), a vector fixed outside swift-crypto.
    @Test func tagMatchesRFC4231() {
        let message = Array("what do ya want for nothing?".utf8)
        let tag = message.withUnsafeBytes { HeartbeatTag(secret: Array("Jefe".utf8)).withTag(of: $0) { Array($0) } }
        #expect(Hex.encode(tag) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func sealedDatagramCarriesTruncatedHMAC() throws {
        var signer = try HeartbeatSigner(credentials: credentials)
        let bytes = signer.next(state: .ready, queueDepth: 3, progress: 9, timestampMs: 1234)
        #expect(bytes.count == 64)
        let expected = HMAC<SHA256>.authenticationCode(for: bytes[0..<48], using: SymmetricKey(data: Hex.decode(credentials.secret)!))
        #expect(Array(bytes[48..<64]) == Array(expected.prefix(16)))
    }

    @Test func verifiesOnlyUnderTheRightSecret() throws {
        var signer = try HeartbeatSigner(credentials: credentials)
        let bytes = signer.next(state: .ready, queueDepth: 0, progress: 0)
        guard case .heartbeat(let datagram) = bytes.withUnsafeBytes({ HeartbeatDatagram.decode($0) }) else {
            Issue.record("did not decode")
            return
        }
        #expect(bytes.withUnsafeBytes { HeartbeatTag(secret: Hex.decode(credentials.secret)!).verifies(datagram, bytes: $0) })
        #expect(!bytes.withUnsafeBytes { HeartbeatTag(secret: [9, 9, 9]).verifies(datagram, bytes: $0) })
    }

    @Test func iterationsIncreaseAcrossRestarts() throws {
        var first = try HeartbeatSigner(credentials: credentials)
        for _ in 0..<1000 { _ = first.next(state: .ready, queueDepth: 0, progress: 0) }
        usleep(2000)
        let second = try HeartbeatSigner(credentials: credentials)
        #expect(second.iteration > first.iteration)
    }

    @Test func badSecretIsRefused() {
        var broken = credentials
        broken.secret = "not hex"
        #expect(throws: SocketError.self) { try HeartbeatSigner(credentials: broken) }
    }
}

@Suite struct FileIOTests {
    @Test func atomicWriteReplacesWholeAndSetsMode() throws {
        let directory = Scratch.directory("pimesh-io")
        let path = directory + "/token"
        try FileIO.writeAtomically(path: path, bytes: Array("first".utf8), mode: 0o600)
        try FileIO.writeAtomically(path: path, bytes: Array("second".utf8), mode: 0o600)
        #expect(try FileIO.readText(path: path) == "second")
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try FileIO.list(directory) == ["token"])
        // A name planted beside it by someone else is neither followed nor reused.
        let victim = directory + "/victim"
        try FileIO.writeAtomically(path: victim, bytes: Array("keep".utf8), mode: 0o600)
        symlink(victim, path + ".tmp.\(getpid())")
        try FileIO.writeAtomically(path: path, bytes: Array("third".utf8), mode: 0o600)
        #expect(try FileIO.readText(path: victim) == "keep")
        #expect(try FileIO.readText(path: path) == "third")
        // Not replacing: an existing file stays as it was, and no temporary is left.
        #expect(throws: FileIO.Failure.self) { try FileIO.writeAtomically(path: path, bytes: Array("fourth".utf8), mode: 0o600, replacing: false) }
        #expect(try FileIO.readText(path: path) == "third")
        try FileIO.writeAtomically(path: directory + "/new", bytes: Array("fresh".utf8), mode: 0o600, replacing: false)
        #expect(try FileIO.list(directory).sorted() == ["new", "token", "token.tmp.\(getpid())", "victim"])
    }

    @Test func discoveryExplainsAMissingLead() {
        #expect(throws: LeadDiscoveryError.self) { try LeadDiscovery.endpoint(dataDir: "/nonexistent/pimesh") }
        #expect(LeadDiscovery.defaultDataDir(environment: [:]) == "./.pimesh")
        #expect(LeadDiscovery.defaultDataDir(environment: ["PIMESH_DATA_DIR": "/var/lib/pimesh"]) == "/var/lib/pimesh")
    }

    /// A listener that never answers (a lead stopped with SIGSTOP, or not a lead) is named as a
    /// timeout, not as EAGAIN's "Resource temporarily unavailable".
    @Test func aSilentListenerIsATimeout() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try #require(bind(listener, $0, length) == 0)
                try #require(listen(listener, 4) == 0)
                try #require(getsockname(listener, $0, &length) == 0)
            }
        }
        let client = LoopbackHTTPClient(address: .loopback(host: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port))), timeoutMs: 200)
        do {
            _ = try client.request("GET", "/v1/status")
            Issue.record("a listener that never answers answered")
        } catch {
            #expect("\(error)".contains("no progress within 200 ms (the lead is stopped, overloaded or not a lead)"), "\(error)")
        }
    }
}

/// A supervised agent's secret comes through a pipe (PIMESH_AGENT_SECRET_FD), not the
/// environment: read once, the descriptor closed, and bad values named.
@Suite struct SecretDescriptorTests {
    let environment = [
        "PIMESH_AGENT_ID": "0123abcd-4567-4890-a1b2-c3d4e5f60718", "PIMESH_AGENT_NAME": "piped",
        "PIMESH_HEARTBEAT_HOST": "127.0.0.1", "PIMESH_HEARTBEAT_PORT": "9", "PIMESH_AGENT_SECRET": String(repeating: "cd", count: 32),
    ]

    func filledPipe(_ text: String) throws -> Int32 {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        let reader = fcntl(fds[0], F_DUPFD_CLOEXEC, 3)
        close(fds[0])
        let bytes = Array(text.utf8)
        #expect(write(fds[1], bytes, bytes.count) == bytes.count)
        close(fds[1])
        return reader
    }

    @Test func theDescriptorIsReadOnceAndClosed() throws {
        let reader = try filledPipe(String(repeating: "ab", count: 32) + "\n")
        // A second descriptor of the same pipe tells its number's closing from its reuse by a
        // test running beside this one.
        let same = dup(reader)
        defer { close(same) }
        var values = environment
        values["PIMESH_AGENT_SECRET_FD"] = String(reader)
        let credentials = try AgentCredentials.fromEnvironment(values)
        #expect(credentials.secret == String(repeating: "ab", count: 32), "the descriptor wins over the variable")
        var pipeInfo = stat(), now = stat()
        #expect(fstat(same, &pipeInfo) == 0)
        #expect(fstat(reader, &now) != 0 || now.st_ino != pipeInfo.st_ino, "closed once read")
        // Without the descriptor, the variable (an agent started by hand); an empty one is none.
        #expect(try AgentCredentials.fromEnvironment(environment).secret == String(repeating: "cd", count: 32))
        values["PIMESH_AGENT_SECRET_FD"] = ""
        #expect(try AgentCredentials.fromEnvironment(values).secret == String(repeating: "cd", count: 32))
    }

    @Test func badDescriptorsAreNamed() throws {
        let short = try filledPipe("abcd")
        // Far above any descriptor a test process opens: never another test's.
        let closed = Int32.max
        for (value, said) in [
            ("2", "PIMESH_AGENT_SECRET_FD is not a descriptor number of 3 or above: 2"),
            ("three", "PIMESH_AGENT_SECRET_FD is not a descriptor number of 3 or above: three"),
            (String(closed), "cannot read the secret from descriptor \(closed) (PIMESH_AGENT_SECRET_FD): Bad file descriptor"),
            (String(short), "the secret read from PIMESH_AGENT_SECRET_FD is not 64 hex digits"),
        ] {
            var values = environment
            values["PIMESH_AGENT_SECRET_FD"] = value
            // Once: a descriptor is closed by the first read.
            do {
                _ = try AgentCredentials.fromEnvironment(values)
                Issue.record("\(value) was taken")
            } catch {
                #expect("\(error)" == said)
            }
        }
    }
}
