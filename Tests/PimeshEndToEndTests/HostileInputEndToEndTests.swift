import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// Issue 20: agents send numbers, and numbers must not take the lead down.
@Suite(.serialized) struct HostileInputEndToEndTests {
    struct Gather: Encodable {
        var capability: String
        var timeoutMs: Int? = nil
    }

    /// The reproduced crash: a CLASS_F_HUMAN agent heartbeats queue_depth 0xFFFFFFFF (valid and
    /// signed), then an ask, a broadcast and tasks with deadlines go to its capability. Then the
    /// worst value of each other field. The lead answers every request and stays healthy.
    @Test func extremeHeartbeatFieldsThenAskBroadcastAndDeadlinesKeepTheLeadUp() throws {
        let dataDir = LeadProcess.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let client = try lead.client()
        let human = try client.register(.init(name: "oracle-1", agentClass: .human, capabilities: ["oracle"]))
        let local = try client.register(.init(name: "oracle-2", agentClass: .local, capabilities: ["oracle"]))
        let steady = try HeartbeatThread(credentials: local)
        defer { steady.stop() }

        let extremes: [(queue: Int, progress: UInt64)] = [
            (Int(UInt32.max), 0), (Int(UInt32.max), .max), (0, .max), (Int(UInt32.max) - 1, 1),
        ]
        for (queue, progress) in extremes {
            // Both agents heartbeat throughout, so the node stays FULL and ask/broadcast go out.
            let extreme = try HeartbeatThread(credentials: human, report: .init(state: .ready, queueDepth: queue, progress: progress))
            defer { extreme.stop() }
            #expect(eventually(timeout: 10) { try lead.status().health?.level == "FULL" && lead.agents().allSatisfy { $0.state == "READY" } })
            let slow = client.withTimeout(milliseconds: 30_000)
            _ = try APICoding.decode(GatherReport.self, from: slow.post("/v1/ask", json: try APICoding.encode(Gather(capability: "oracle", timeoutMs: 1000))))
            _ = try APICoding.decode(GatherReport.self, from: slow.post("/v1/broadcast", json: try APICoding.encode(Gather(capability: "oracle", timeoutMs: 1000))))
            for deadline in [1, 1000, 86_400_000] {
                let task = try client.submit(.init(capability: "oracle", payload: "q", weight: 100, deadlineMs: deadline))
                #expect(["queued", "assigned", "skipped", "running", "succeeded", "failed"].contains(task.state))
                // Nobody here takes work: a task left with an agent would be (rightly) judged a hang.
                if !["skipped", "succeeded", "failed"].contains(task.state) {
                    _ = try client.post("/v1/tasks/\(task.id)/cancel", json: [])
                }
            }
            let health = try LoopbackHTTPClient(address: .loopback(host: "127.0.0.1", port: try LeadDiscovery.endpoint(dataDir: dataDir).api.port))
                .request("GET", "/healthz")
            #expect(health.status == 200)
        }
        // The agent's view shows the clamped queue, not 4 billion.
        let view = try #require(try lead.agents().first { $0.name == "oracle-1" })
        #expect(view.impedance.queueDepth <= AgentClass.maxQueueDepth)
        #expect(view.impedance.predictedArrivalMs.isFinite)
        #expect(lead.process.isRunning, "\(lead.log)")
    }

    /// A POST with no body at all is read as `{}`: optional fields take their defaults and a
    /// required one is named.
    @Test func aPostWithNoBodyIsAnEmptyObject() throws {
        let dataDir = LeadProcess.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let lead = try LeadProcess(dataDir: dataDir)
        defer { _ = lead.terminate() }
        _ = try lead.waitReady()
        let client = try lead.client()
        _ = try client.register(.init(name: "suspect", capabilities: ["work"]))
        let operatorAuth = [("Authorization", "Bearer " + (try LeadDiscovery.token(dataDir: dataDir)))]
        let quarantine = try client.http.request("POST", "/v1/agents/suspect/quarantine", headers: operatorAuth)
        #expect(quarantine.status == 200, "\(quarantine.status) \(String(decoding: quarantine.body, as: UTF8.self))")
        #expect(try lead.agents().first?.quarantined == true)
        let submit = try client.http.request("POST", "/v1/tasks", headers: operatorAuth)
        #expect(submit.status == 400)
        #expect(String(decoding: submit.body, as: UTF8.self).contains("capability"), "\(String(decoding: submit.body, as: UTF8.self))")

        // A body that cannot be read (a chunk size that is not hex) is a 400 about the body,
        // not a 413 about a size it never had (helper probe).
        let fd = try ConnectionLimitsEndToEndTests.connected(to: .unix(path: try #require(lead.waitReady().api.unixSocket)))
        defer { close(fd) }
        let broken = "POST /v1/tasks HTTP/1.1\r\nHost: pimesh\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        #expect(ConnectionLimitsEndToEndTests.sendAll(fd, Array(broken.utf8)) == nil)
        let answer = ConnectionLimitsEndToEndTests.readToEnd(fd, seconds: 10)
        #expect(answer.hasPrefix("HTTP/1.1 400"), "\(answer)")
        #expect(!answer.contains("larger than"), "\(answer)")
    }
}
