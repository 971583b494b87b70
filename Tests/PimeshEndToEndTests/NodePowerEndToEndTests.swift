import Foundation
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing

/// The node's own impedance against a real lead on a fake sysfs tree (docs/impedance.md): the
/// firmware reports under-voltage, and the lead lowers its power factor, raises an alert and a
/// SEV2 incident, and shows it all in status and `/metrics`; its own writes are counted
/// against the write budget.
@Suite(.serialized) struct NodePowerEndToEndTests {
    let dataDir = LeadProcess.scratchDirectory()

    @Test func underVoltageIsAFactorAnAlertAndASEV2IncidentAndTheWriteBudgetIsShown() throws {
        let sys = dataDir + "/sys"
        let firmware = sys + "/devices/platform/soc/soc:firmware"
        try FileManager.default.createDirectory(atPath: firmware, withIntermediateDirectories: true)
        try "0\n".write(toFile: firmware + "/get_throttled", atomically: true, encoding: .utf8)
        let config = dataDir + "/pimesh.json"
        try #"{"node": {"sys_root": "\#(sys)", "probe_interval_ms": 100}, "store": {"write_budget_mb_per_day": 64}}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let lead = try LeadProcess(dataDir: dataDir, extraArguments: ["--config", config])
        _ = try lead.waitReady(timeout: 30)
        var status = try lead.status()
        #expect(status.node.factors.power == 1 && status.node.readings.underVoltage == false)
        let writes = try #require(status.node.writes)
        #expect(writes.budgetBytesPerDay == 64 << 20 && writes.checkpointStretch == 1)
        // The supply sags: bit 0 now, bit 16 since boot.
        try "50001\n".write(toFile: firmware + "/get_throttled", atomically: true, encoding: .utf8)
        #expect(eventually(timeout: 10) {
            status = try lead.status()
            return status.node.readings.underVoltage == true
        })
        #expect(status.node.factors.power == 0.5)
        #expect(status.node.score >= 500, "the power factor alone halves what is left")
        #expect(eventually(timeout: 10) {
            let events = try APICoding.decode(HealthEventList.self, from: lead.client().get("/v1/events")).events
            return events.contains { $0.kind == "alert" && $0.detail.hasPrefix("under-voltage") }
        })
        var open: [[String: Any]] = []
        #expect(eventually(timeout: 10) {
            let listed = try runPimesh(["incidents", "list", "--open", "--data-dir", dataDir, "--json"])
            open = try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]] ?? []
            return open.contains { ($0["causes"] as? [String])?.contains("power:under_voltage") == true }
        })
        #expect(open.first { ($0["causes"] as? [String])?.contains("power:under_voltage") == true }?["severity"] as? String == "SEV2")
        let metrics = String(decoding: try lead.client().get("/metrics"), as: UTF8.self)
        #expect(metrics.contains("pimesh_node_under_voltage 1"), "\(metrics)")
        #expect(metrics.contains(#"pimesh_node_factor{factor="power"} 0.5"#))
        #expect(metrics.contains("pimesh_lead_write_budget_bytes_per_day \(64 << 20)"))
        let text = try runPimesh(["status", "--data-dir", dataDir])
        #expect(text.output.contains("UNDER-VOLTAGE"), "\(text.output)")
        #expect(text.output.contains("sd writes"))
        #expect(lead.terminate() == 0)
    }

    @Test func aBadWriteBudgetIsRefusedNamingTheKey() throws {
        let config = dataDir + "/bad.json"
        try #"{"store": {"write_budget_mb_per_day": -1}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let result = try runPimesh(["config", "check", config])
        #expect(result.status != 0)
        #expect(result.output.contains("store.write_budget_mb_per_day"), "\(result.output)")
    }
}
