import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import PimeshTestSupport

/// A real `pimesh` process for end-to-end tests: started on 127.0.0.1 with ports the test
/// chooses (0 = ephemeral), in a scratch data dir, and always stopped by the test.
final class LeadProcess {
    let dataDir: String
    let process = Process()
    let logPath: String

    static var binary: String {
        if let path = ProcessInfo.processInfo.environment["PIMESH_BIN"], !path.isEmpty { return path }
        return repositoryRoot + "/.build/debug/pimesh"
    }

    /// The checkout these tests belong to (its scripts/ are run by some).
    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// `pimesh-coordinator`, built beside `pimesh` (PIMESH_COORDINATOR_BIN names another).
    static var coordinatorBinary: String {
        if let path = ProcessInfo.processInfo.environment["PIMESH_COORDINATOR_BIN"], !path.isEmpty { return path }
        return URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("pimesh-coordinator").path
    }

    static func scratchDirectory() -> String {
        Scratch.directory("pimesh-e2e", mode: 0o755)
    }

    init(
        dataDir: String, apiPort: Int = 0, heartbeatPort: Int = 0, extraArguments: [String] = [],
        environment: [String: String] = [:], wrapper: [String] = []
    ) throws {
        self.dataDir = dataDir
        logPath = dataDir + "/lead-\(UUID().uuidString.prefix(6)).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let arguments = [
            "run", "--data-dir", dataDir, "--api-port", String(apiPort), "--heartbeat-port", String(heartbeatPort),
            "--log-level", ProcessInfo.processInfo.environment["PIMESH_TEST_LOG_LEVEL"] ?? "warning",
        ] + extraArguments
        // A wrapper (setpriv) must exec the lead in place: the tests know it by its pid.
        process.executableURL = URL(fileURLWithPath: wrapper.first ?? Self.binary)
        process.arguments = wrapper.isEmpty ? arguments : Array(wrapper.dropFirst()) + [Self.binary] + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    /// Waits until this process has published lead.json and answers /readyz.
    func waitReady(timeout: TimeInterval = 10) throws -> LeadEndpoint {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning { throw Failure("lead exited with \(process.terminationStatus): \(log)") }
            if let endpoint = try? LeadDiscovery.endpoint(dataDir: dataDir), endpoint.pid == process.processIdentifier,
                let response = try? LoopbackHTTPClient(address: .loopback(host: "127.0.0.1", port: endpoint.api.port)).request("GET", "/readyz"),
                response.status == 200
            {
                return endpoint
            }
            usleep(20_000)
        }
        throw Failure("lead not ready after \(timeout) s: \(log)")
    }

    var log: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    func client() throws -> LeadClient {
        try LeadClient(dataDir: dataDir)
    }

    func statusJSON() throws -> [String: Any] {
        let raw = try client().get("/v1/status")
        return try JSONSerialization.jsonObject(with: Data(raw)) as! [String: Any]
    }

    func status() throws -> StatusReport {
        try APICoding.decode(StatusReport.self, from: client().get("/v1/status"))
    }

    func agents() throws -> [AgentView] {
        try client().agents().agents
    }

    /// SIGKILL, as a crash: the lead's supervised agents keep running, for the next lead on
    /// this data dir to adopt. A test that starts no next lead calls `stopOrphanedAgents()`.
    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Processes a lead of this data dir started (each child carries PIMESH_DATA_DIR) that
    /// still run.
    func agentsStillRunning() -> [pid_t] {
        let marker = Array("PIMESH_DATA_DIR=\(dataDir)".utf8) + [0]
        var found: [pid_t] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != getpid(),
                let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ")
            else { continue }
            let bytes = [UInt8](environment)
            let carries = bytes.withUnsafeBufferPointer { buffer in
                buffer.indices.contains { start in
                    (start == 0 || buffer[start - 1] == 0) && start + marker.count <= buffer.count
                        && Array(buffer[start..<(start + marker.count)]) == marker
                }
            }
            if carries { found.append(pid) }
        }
        return found
    }

    /// Kills what a lead of this data dir started and left running: without it they outlive
    /// the suite, reparented to init.
    func stopOrphanedAgents() {
        for pid in agentsStillRunning() { kill(pid, SIGKILL) }
    }

    func terminate() -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A test that ends with its lead running (a failed expectation, or nothing left to check)
    /// stops it as an operator would: SIGTERM, and the lead stops its agents before it exits.
    /// Only a lead that does not exit within 30 s is killed, and what it left with it.
    deinit {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            stopOrphanedAgents()
        }
    }
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A loopback port nothing listens on now, for a test that must start two leads on the same
/// ports. `type`: SOCK_STREAM or SOCK_DGRAM.
func freeLoopbackPort(type: __socket_type = SOCK_STREAM) -> Int {
    let fd = socket(AF_INET, Int32(type.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A datagram socket bound at `path` that stands in for systemd's NOTIFY_SOCKET; receives time
/// out after `timeoutSeconds`. The caller closes it.
func bindNotifySocket(path: String, timeoutSeconds: Int) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
    guard try LocalAddress.unix(path: path).withSockaddr({ bind(fd, $0, $1) }) == 0 else {
        close(fd)
        throw Failure("cannot bind \(path): errno \(errno)")
    }
    var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Polls until `condition` holds or the timeout passes; returns whether it held.
func eventually(timeout: TimeInterval = 5, _ condition: () throws -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? condition()) == true { return true }
        usleep(20_000)
    }
    return false
}

/// Runs a `pimesh` client command and returns its exit status and output.
func runPimesh(
    _ arguments: [String], timeout: TimeInterval = 30, directory: String? = nil, environment: [String: String]? = nil
) throws -> (status: Int32, output: String) {
    try runProcess(LeadProcess.binary, arguments, directory: directory, environment: environment)
}

func runCoordinator(_ arguments: [String]) throws -> (status: Int32, output: String) {
    try runProcess(LeadProcess.coordinatorBinary, arguments)
}

/// Runs any program to its end and returns its exit status and output (stdout and stderr).
func runProcess(
    _ executable: String, _ arguments: [String], directory: String? = nil, environment: [String: String]? = nil
) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs a program to its end with posix_spawn and waitpid, its output (stdout and stderr) in a
/// file. For programs that leave a daemon behind (scripts/systemd-container.sh): Foundation's
/// Process did not see such a script exit (it stayed a zombie, the test hung), and waitpid does.
func runSpawned(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let log = Scratch.directory("pimesh-spawned") + "/output"
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard spawned == 0 else { throw Failure("cannot run \(executable): \(String(cString: strerror(spawned)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0, errno == EINTR {}
    return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
}

/// Heartbeats for one agent on a thread of its own: tests block their own thread while they
/// wait, and on a 2-core machine an async heartbeat task could then starve.
final class HeartbeatThread: @unchecked Sendable {
    private let stopped = StopFlag()

    init(credentials: AgentCredentials, report: PimeshAgent.Report = .init(state: .ready)) throws {
        let sender = try HeartbeatSender(credentials: credentials)
        let interval = UInt32(max(10, credentials.heartbeat.intervalMs) * 1000)
        let stopped = stopped
        Thread {
            while !stopped.isSet {
                _ = try? sender.send(state: report.state, queueDepth: report.queueDepth, progress: report.progress)
                usleep(interval)
            }
        }.start()
    }

    func stop() { stopped.set() }

    deinit { stopped.set() }
}
