import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// Seed 001 §6.3's operational modes against a real lead: at EMERGENCY the lead alerts and
/// preserves its state in a snapshot; from DEGRADED_SEVERE on, ask and broadcast need an
/// operator's approval, which the audit log records.
@Suite(.serialized) struct DegradationEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    func events(_ lead: LeadProcess) throws -> [HealthEvent] {
        try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events")).events
    }

    @Test func emergencyAlertsPreservesStateAndMeshWideOperationsNeedApproval() throws {
        let lead = try LeadProcess(dataDir: dataDir)
        _ = try lead.waitReady(timeout: 30)
        defer { _ = lead.terminate() }
        let client = try lead.client()
        // The only agent goes silent: 0 of 1 healthy is EMERGENCY.
        let credentials = try client.register(.init(name: "lonely", capabilities: ["work"]))
        let beats = try HeartbeatThread(credentials: credentials)
        #expect(eventually(timeout: 10) { try lead.status().health?.level == "FULL" })
        beats.stop()
        #expect(eventually(timeout: 15) { try lead.status().health?.level == "EMERGENCY" })
        #expect(eventually(timeout: 10) { try events(lead).contains { $0.kind == "alert" && $0.detail.hasPrefix("EMERGENCY: 0 of 1 agents healthy") } })
        #expect(eventually(timeout: 20) {
            try events(lead).contains { $0.kind == "state_preserved" && $0.detail.hasSuffix("taken on entering EMERGENCY") }
        })
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: dataDir + "/spool")
        #expect(!snapshots.isEmpty, "\(snapshots)")
        let health = try #require(try lead.status().health)
        #expect(health.restrictions.contains("ask and broadcast need an operator's approval"))

        // Seed "queue non-urgent operations": priority 1 is accepted and waits (WAIT) for the
        // node to recover; its time to live drops it when the node does not recover in time.
        let low = try APICoding.decode(
            TaskView.self, from: try client.post("/v1/tasks", json: Array(#"{"capability": "work", "priority": 1, "ttl_ms": 1500}"#.utf8)))
        #expect(low.decision == "WAIT", "\(low)")
        #expect(low.state == "queued")
        #expect(low.waitReason?.contains("tasks below priority 3 wait until it recovers") == true, "\(low)")
        #expect(low.ttlMs == 1500)
        #expect(eventually(timeout: 10) { try client.task(id: low.id).skipCode == "ttl_exceeded" })
        let expired = try client.task(id: low.id)
        #expect(expired.state == "skipped")
        #expect(expired.skipReason?.contains("longer than its time to live of 1500 ms") == true, "\(expired)")
        // Background work is shed, and a capability nobody has is skipped as before.
        let background = try APICoding.decode(
            TaskView.self, from: try client.post("/v1/tasks", json: Array(#"{"capability": "work", "priority": 0}"#.utf8)))
        #expect(background.skipCode == "shed")
        let nobody = try APICoding.decode(
            TaskView.self, from: try client.post("/v1/tasks", json: Array(#"{"capability": "none", "priority": 1}"#.utf8)))
        #expect(nobody.skipCode == "no_capable_agent")

        // Without approval: 428, naming the field and how to approve, whatever the priority.
        for body in [#"{"capability": "work", "priority": 3, "timeout_ms": 200}"#, #"{"capability": "work", "timeout_ms": 200}"#] {
            do {
                _ = try client.post("/v1/ask", json: Array(body.utf8))
                Issue.record("an unapproved ask went out at EMERGENCY: \(body)")
            } catch let error as LeadClient.APIError {
                #expect(error.status == 428, "\(body)")
                #expect(error.message.contains("\"approved\": true"), "\(error.message)")
            }
        }
        // With it: the ask runs, and the audit log says who approved it at which level.
        let report = try APICoding.decode(
            GatherReport.self,
            from: try client.post("/v1/ask", json: Array(#"{"capability": "work", "priority": 3, "timeout_ms": 200, "approved": true}"#.utf8)))
        #expect(report.targets == 1)
        let audit = try runPimesh(["audit", "tail", "--data-dir", dataDir, "--json", "--kind", "ask_approved"])
        #expect(audit.status == 0, "\(audit.output)")
        #expect(audit.output.contains("level=EMERGENCY"), "\(audit.output)")
        #expect(audit.output.contains("operator"), "\(audit.output)")
    }
}
