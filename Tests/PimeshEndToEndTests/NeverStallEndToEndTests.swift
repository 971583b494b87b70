import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization
import Testing

/// Issue 20: nothing that blocks (a commit stuck in fsync, an upload to a receiver that never
/// answers, an ask waiting for an agent that never answers) holds up the API, the watchdog or a
/// stop.
@Suite(.serialized) struct NeverStallEndToEndTests {
    let root = LeadProcess.scratchDirectory()

    final class Counter: Sendable {
        private let value = Mutex(0)
        func withLock<T>(_ body: (inout Int) -> T) -> T { value.withLock { body(&$0) } }
    }

    /// Accepts connections and never reads or answers: a receiver stalled mid-upload.
    final class StalledReceiver: @unchecked Sendable {
        let fd: Int32
        let port: Int
        private let accepted = Counter()

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            self.fd = fd
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            port = Int(UInt16(bigEndian: address.sin_port))
            guard listen(fd, 8) == 0 else { throw Failure("listen: \(errno)") }
            let accepted = accepted
            Thread {
                while true {
                    let connection = accept(fd, nil, nil)
                    if connection < 0 { return }
                    accepted.withLock { $0 += 1 }
                }
            }.start()
        }

        var acceptedCount: Int { accepted.withLock { $0 } }

        deinit { close(fd) }
    }

    final class AskAnswer: Sendable {
        private let value = Mutex<Result<[UInt8], any Error>?>(nil)
        func withLock<T>(_ body: (inout Result<[UInt8], any Error>?) -> T) -> T { value.withLock { body(&$0) } }
    }

    /// Before, reads took the writer's lock on cooperative threads: with the writer inside a
    /// slow commit, `/v1/tasks` waited for it, and a few such requests stalled the whole pool.
    @Test func aCommitStuckInFsyncHoldsUpNeitherReadsNorTheWatchdog() throws {
        let dataDir = root + "/slow"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let notifyPath = dataDir + "/notify.sock"
        let notify = try bindNotifySocket(path: notifyPath, timeoutSeconds: 1)
        defer { close(notify) }
        let lead = try LeadProcess(
            dataDir: dataDir, environment: ["PIMESH_FAULT_SLOW_COMMIT_MS": "3000", "NOTIFY_SOCKET": notifyPath, "WATCHDOG_USEC": "400000"])
        _ = try lead.waitReady()
        let client = try lead.client()
        let first = try client.withTimeout(milliseconds: 30_000).submit(.init(capability: "nobody", payload: "{}"))

        // Two submitters keep the writer inside a slow commit from here on.
        let stop = StopFlag()
        let submitted = Counter()
        for _ in 0..<2 {
            let submitter = client.withTimeout(milliseconds: 30_000)
            Thread {
                while !stop.isSet {
                    if (try? submitter.submit(.init(capability: "nobody", payload: "{}"))) != nil { submitted.withLock { $0 += 1 } }
                }
            }.start()
        }
        defer { stop.set() }
        Thread.sleep(forTimeInterval: 0.5)  // the first commit of the two is under way (not timed)

        var slowest: [String: Double] = [:]
        let paths = ["/healthz", "/v1/status", "/v1/tasks?limit=5", "/v1/tasks/\(first.id)", "/v1/conflicts", "/v1/agents"]
        var watchdogPets = 0
        let started = Date()
        var buffer = [UInt8](repeating: 0, count: 64)
        while Date().timeIntervalSince(started) < 4 {
            for path in paths {
                let before = Date()
                _ = try client.get(path)
                slowest[path] = max(slowest[path] ?? 0, Date().timeIntervalSince(before))
            }
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(notify, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                guard n > 0 else { break }
                if String(decoding: buffer.prefix(n), as: UTF8.self) == "WATCHDOG=1" { watchdogPets += 1 }
            }
            usleep(100_000)
        }
        // Reads answer in milliseconds; a read that waited for the writer would take ~3 s.
        for (path, seconds) in slowest {
            #expect(seconds < 1.0, "\(path) took \(seconds) s while the writer was in a 3 s commit")
        }
        // The watchdog is petted every 200 ms; over 4 s that is about 20 pets.
        #expect(watchdogPets >= 10, "only \(watchdogPets) watchdog pets in 4 s")
        #expect(submitted.withLock { $0 } <= 4, "the submissions were not slowed: the fault hook is not in effect")
        stop.set()
        #expect(lead.terminate() == 0)
    }

    @Test func aSigtermDuringAStalledUploadAndAPendingAskStopsWithinTheDeadlineWithEveryAcceptedWriteOnDisk() throws {
        let receiver = try StalledReceiver()
        let dataDir = root + "/node"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let config = root + "/pimesh.json"
        try #"{"stop_deadline_s": 10, "snapshots": {"interval_s": 0}, "upload": {"target": "coordinator", "url": "http://127.0.0.1:\#(receiver.port)"}}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        _ = try lead.waitReady()
        let client = try lead.client()

        // An agent that is READY for "slow" work and never answers an ask.
        let credentials = try client.register(.init(name: "mute", capabilities: ["slow"]))
        let heartbeats = try HeartbeatThread(credentials: credentials)
        defer { heartbeats.stop() }
        #expect(eventually(timeout: 10) { try lead.agents().first { $0.name == "mute" }?.state == "READY" })

        // A snapshot for the uploader, which then hangs waiting for the receiver's answer.
        _ = try client.post("/v1/snapshots", json: Array("{}".utf8))
        #expect(eventually(timeout: 15) { receiver.acceptedCount > 0 }, "the lead never connected to the receiver: \(lead.log)")

        // An ask that would wait two minutes for the mute agent.
        let askAnswer = AskAnswer()
        let askClient = client.withTimeout(milliseconds: 60_000)
        Thread {
            let body = Array(#"{"capability": "slow", "timeout_ms": 120000, "window_ms": 60000}"#.utf8)
            let result = Result { try askClient.post("/v1/ask", json: body) }
            askAnswer.withLock { $0 = result }
        }.start()

        // Tasks accepted just before the stop: each answer means "durable", so each must be on disk.
        var accepted: [String: String] = [:]
        for index in 0..<25 {
            let view = try client.submit(.init(capability: index % 2 == 0 ? "nobody" : "slow", payload: "{\"n\": \(index)}"))
            accepted[view.id] = view.state
        }
        Thread.sleep(forTimeInterval: 0.3)  // the ask is under way (its answer is checked below, not timed)

        let stopAsked = Date()
        let status = lead.terminate()
        let stopTook = Date().timeIntervalSince(stopAsked)
        #expect(status == 0, "\(lead.log)")
        #expect(stopTook < 10, "the lead took \(stopTook) s to stop: \(lead.log)")

        // The ask was answered (with what it had), not cut off.
        #expect(eventually(timeout: 10) { askAnswer.withLock { $0 } != nil })
        if case .success(let bytes) = askAnswer.withLock({ $0 }) {
            let report = try APICoding.decode(GatherReport.self, from: bytes)
            #expect(report.sent == 1 && report.silent == 1, "\(report)")
        } else {
            Issue.record("the ask got no answer: \(String(describing: askAnswer.withLock { $0 }))")
        }

        // Every accepted task is there after a restart.
        let again = try LeadProcess(dataDir: dataDir)
        defer { _ = again.terminate() }
        _ = try again.waitReady()
        let client2 = try again.client()
        // Skipped ones stay skipped; routed ones come back queued for the next agent.
        for (id, state) in accepted {
            let stored = (try? client2.task(id: id).state) ?? "missing"
            #expect(stored == (state == "skipped" ? "skipped" : "queued"), "task \(id): accepted \(state), stored \(stored)")
        }
    }
}
