import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// Seed 000 ModelLivenessProbe against a real lead: an agent that heartbeats but whose HTTP
/// endpoint answers 503 is judged hung and restarted; once its endpoint answers it stays up.
@Suite(.serialized) struct LivenessProbeEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    /// A loopback HTTP server that answers every GET with the status in `status`, and adds a
    /// byte to `hits` for each answer.
    func startEndpoint() throws -> (UploadEndToEndTests.Background, Int) {
        try FileManager.default.createDirectory(atPath: dataDir + "/endpoint", withIntermediateDirectories: true)
        try "200".write(toFile: dataDir + "/endpoint/status", atomically: true, encoding: .utf8)
        let script = """
            import http.server, sys
            d = sys.argv[1]
            class H(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    self.send_response(int(open(d + "/status").read()))
                    self.end_headers()
                    open(d + "/hits", "a").write(".")
                def log_message(self, *a): pass
            s = http.server.HTTPServer(("127.0.0.1", 0), H)
            open(d + "/port.tmp", "w").write(str(s.server_address[1]))
            import os; os.rename(d + "/port.tmp", d + "/port")
            s.serve_forever()
            """
        let server = try UploadEndToEndTests.Background(
            "/usr/bin/python3", ["-c", script, dataDir + "/endpoint"], log: dataDir + "/endpoint/log")
        var port = 0
        #expect(eventually(timeout: 10) {
            port = Int(try String(contentsOfFile: dataDir + "/endpoint/port", encoding: .utf8)) ?? 0
            return port > 0
        })
        return (server, port)
    }

    func events(_ lead: LeadProcess) throws -> [HealthEvent] {
        try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events")).events
    }

    @Test func anAgentWhoseEndpointAnswers503IsRestartedAndStaysUpOnceItAnswers() throws {
        let (server, port) = try startEndpoint()
        defer { server.stop() }
        try FileManager.default.createDirectory(atPath: dataDir + "/agents.d", withIntermediateDirectories: true)
        try #"""
            {"name": "llm", "command": "\#(LeadProcess.binary)", "args": ["agent"], "capabilities": ["infer"],
             "liveness_probe": {"url": "http://127.0.0.1:\#(port)/v1/readiness", "every_s": 1, "timeout_ms": 2000}}
            """#.write(toFile: dataDir + "/agents.d/llm.json", atomically: true, encoding: .utf8)
        // Three more agents: one hung agent of four leaves the node at DEGRADED_MODERATE, where
        // restarting it is still automatic (alone, it would be EMERGENCY and wait for an operator).
        for i in 1...3 {
            try #"{"name": "w\#(i)", "command": "\#(LeadProcess.binary)", "args": ["agent"], "capabilities": ["work"]}"#
                .write(toFile: dataDir + "/agents.d/w\(i).json", atomically: true, encoding: .utf8)
        }
        let lead = try LeadProcess(dataDir: dataDir)
        _ = try lead.waitReady(timeout: 30)
        func llm() throws -> AgentView? { try lead.agents().first { $0.name == "llm" } }
        #expect(eventually(timeout: 30) { try llm()?.health?.condition == "alive" })
        // Answering 200: nothing happens.
        #expect(eventually(timeout: 30) { try llm()?.health?.condition == "alive" && (try llm()?.supervision?.restarts ?? -1) == 0 })
        // A process is judged once it answered live (else after its 30 s start grace): wait for
        // a probe answered 200 while it runs before the endpoint turns.
        let hits = { (try? String(contentsOfFile: dataDir + "/endpoint/hits", encoding: .utf8))?.count ?? 0 }
        let before = hits()
        #expect(eventually(timeout: 30) { hits() > before })
        try "503".write(toFile: dataDir + "/endpoint/status", atomically: true, encoding: .utf8)
        #expect(eventually(timeout: 30) {
            try events(lead).contains { $0.agent == "llm" && $0.kind == "hung" && $0.detail.contains("liveness probe: HTTP 503") }
        })
        #expect(eventually(timeout: 30) { (try llm()?.supervision?.restarts ?? 0) >= 1 }, "restarted as a hung agent is")
        try "200".write(toFile: dataDir + "/endpoint/status", atomically: true, encoding: .utf8)
        #expect(eventually(timeout: 30) { try llm()?.health?.condition == "alive" })
        // The new process is not judged before it answered (its start grace), so a 503 read
        // just before the endpoint recovered cannot restart it again; once it answered 200 it
        // stays up through more probes (every 1 s) and is not restarted again.
        let restarts = try llm()?.supervision?.restarts ?? 0
        let settled = Date().addingTimeInterval(3.5)
        while Date() < settled { usleep(100_000) }
        #expect(try llm()?.health?.condition == "alive")
        #expect(try llm()?.supervision?.restarts == restarts)
        #expect(lead.terminate() == 0)
    }
}
