import Foundation
import PimeshAgent
import PimeshSystem
import Testing

/// A fake `/sys` with onboard LEDs, laid out as Pi OS does.
func fakeSys(withLEDs: Bool) -> String {
    let root = LeadProcess.scratchDirectory() + "/sys"
    if withLEDs {
        for (name, trigger, brightness) in [("ACT", "none [mmc0] heartbeat", "0"), ("PWR", "none [default-on] input", "255")] {
            let directory = root + "/class/leds/" + name
            try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try! trigger.write(toFile: directory + "/trigger", atomically: false, encoding: .utf8)
            try! brightness.write(toFile: directory + "/brightness", atomically: false, encoding: .utf8)
            try! "255".write(toFile: directory + "/max_brightness", atomically: false, encoding: .utf8)
        }
    } else {
        try! FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }
    return root
}

func writeConfig(_ text: String) -> String {
    let path = LeadProcess.scratchDirectory() + "/pimesh.json"
    try! text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

func read(_ path: String) -> String {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite(.serialized) struct LEDEndToEndTests {
    @Test func theLeadDrivesTheOnboardLEDsAndRestoresThemOnSIGTERM() throws {
        let sys = fakeSys(withLEDs: true)
        let config = writeConfig(#"{"node": {"sys_root": "\#(sys)"}, "leds": {"backend": "auto", "refresh_ms": 100}}"#)
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory(), extraArguments: ["--config", config])
        _ = try lead.waitReady()
        let act = sys + "/class/leds/ACT"
        #expect(eventually { read(act + "/trigger") == "none" })
        #expect(read(sys + "/class/leds/PWR/trigger") == "none")
        // The pulse: ACT is lit and dark in turn within two seconds.
        var seen = Set<String>()
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline && seen.count < 2 {
            // The fake brightness is a plain file, empty for an instant while the lead rewrites
            // it (truncate, then write); a sysfs attribute never is. Those reads say nothing.
            let brightness = read(act + "/brightness")
            if !brightness.isEmpty { seen.insert(brightness) }
            usleep(10_000)
        }
        #expect(seen == ["0", "255"])
        let report = try APICoding.decode(LEDReport.self, from: lead.client().get("/v1/leds"))
        #expect(report.backend == "sysfs")
        #expect(report.note.contains("auto: onboard LEDs"))
        #expect(report.leds.map(\.role) == ["liveness", "alert"])
        #expect(report.leds.first?.pattern == "100 ms on at 0 ms, every 1000 ms")
        #expect(lead.terminate() == 0)
        #expect(read(act + "/trigger") == "mmc0")
        #expect(read(sys + "/class/leds/PWR/trigger") == "default-on")
    }

    @Test func withoutOnboardLEDsAutoSaysSoAndSimulates() throws {
        let sys = fakeSys(withLEDs: false)
        let config = writeConfig(#"{"node": {"sys_root": "\#(sys)"}, "leds": {"refresh_ms": 100}}"#)
        let lead = try LeadProcess(dataDir: LeadProcess.scratchDirectory(), extraArguments: ["--config", config, "--log-level", "info"])
        _ = try lead.waitReady()
        #expect(eventually { lead.log.contains("using the simulated LEDs") })
        let shown = try runPimesh(["leds", "show", "--data-dir", lead.dataDir])
        #expect(shown.status == 0, "\(shown.output)")
        #expect(shown.output.contains("backend     sim"))
        #expect(shown.output.contains("level FULL"))
        // An agent that heartbeat and went silent (its swarm killed) is suspected, and as the only
        // agent of its capabilities it leaves them uncovered: a SEV1 incident, 1 blink.
        let swarm = Process()
        swarm.executableURL = URL(fileURLWithPath: LeadProcess.binary)
        swarm.arguments = ["swarm", "--data-dir", lead.dataDir, "--agents", "1", "--duration", "60"]
        swarm.standardError = FileHandle.nullDevice
        try swarm.run()
        #expect(eventually(timeout: 20) { try lead.agents().contains { $0.health?.condition == "alive" } })
        kill(swarm.processIdentifier, SIGKILL)
        swarm.waitUntilExit()
        #expect(eventually(timeout: 20) { try APICoding.decode(LEDReport.self, from: lead.client().get("/v1/leds")).alertBlinks == 1 })
        let watched = try runPimesh(["leds", "watch", "--duration", "1.2", "--data-dir", lead.dataDir])
        #expect(watched.status == 0)
        #expect(watched.output.contains("● liveness") && watched.output.contains("○ liveness"))
        #expect(watched.output.contains("alert SEV1"), "\(watched.output)")
        #expect(lead.terminate() == 0)
    }

    @Test func ledsTestRunsEveryPatternOnTheSimBackend() throws {
        let result = try runPimesh(["leds", "test", "--backend", "sim", "--json", "--data-dir", LeadProcess.scratchDirectory()], timeout: 90)
        #expect(result.status == 0, "\(result.output)")
        let steps = result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(steps.count == 1 + 5 + 4 + 1)
        #expect(steps.contains { $0.contains("alert 4: SEV4") })
    }

    @Test func selftestReportsEveryCheckAndNeverCrashesWithoutGPIO() throws {
        let sys = fakeSys(withLEDs: true)
        let config = writeConfig(#"{"node": {"sys_root": "\#(sys)"}}"#)
        let result = try runPimesh(["selftest", "--json", "--config", config, "--data-dir", LeadProcess.scratchDirectory()])
        let json = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("{") })
        let report = try APICoding.decode(SelftestReport.self, from: Array(json.utf8))
        let byCheck = Dictionary(uniqueKeysWithValues: report.results.map { ($0.check, $0) })
        #expect(Set(byCheck.keys) == ["leds.sysfs", "leds.gpiod", "heartbeat.socket", "store.fsync", "disk.free", "cgroup.v2", "thermal", "power", "clock"])
        #expect(byCheck["leds.sysfs"]?.result == "PASS", "\(String(describing: byCheck["leds.sysfs"]))")
        // Restored: in a fake tree the file holds what was written back (sysfs would list all, [mmc0] marked).
        #expect(read(sys + "/class/leds/ACT/trigger") == "mmc0")
        let gpio = try #require(byCheck["leds.gpiod"])
        #expect(gpio.result == "SKIP" || gpio.result == "FAIL")
        #expect(gpio.detail.contains("gpiochip"))
        #expect(byCheck["heartbeat.socket"]?.result == "PASS")
        #expect(byCheck["store.fsync"]?.result == "PASS")
        #expect(byCheck["power"]?.result == "SKIP" && byCheck["power"]?.detail.contains("not a Raspberry Pi") == true)
        // A date is not enough: the kernel's word on NTP decides (this machine's may go either way).
        let clock = try #require(byCheck["clock"])
        #expect(
            (clock.result == "PASS" && clock.detail.contains(", synchronized (adjtimex)"))
                || (clock.result == "FAIL" && clock.detail.contains("is not synchronized (adjtimex)"))
                || (clock.result == "FAIL" && clock.detail.contains("adjtimex failed")), "\(clock)")
        #expect(result.status == (report.failed > 0 ? 1 : 0))
        // The firmware's word, as a Pi OS kernel shows it: under-voltage since boot is a FAIL.
        try FileManager.default.createDirectory(atPath: sys + "/devices/platform/soc/soc:firmware", withIntermediateDirectories: true)
        try "50000\n".write(toFile: sys + "/devices/platform/soc/soc:firmware/get_throttled", atomically: true, encoding: .utf8)
        let powered = try runPimesh(["selftest", "--json", "--config", config, "--data-dir", LeadProcess.scratchDirectory()])
        let poweredJSON = try #require(powered.output.split(separator: "\n").first { $0.hasPrefix("{") })
        let power = try #require(try APICoding.decode(SelftestReport.self, from: Array(poweredJSON.utf8)).results.first { $0.check == "power" })
        #expect(power.result == "FAIL" && power.detail.contains("since boot"), "\(power)")

        // A configured gpiod backend without a chip is a FAIL, and the exit status says so.
        let gpiod = writeConfig(#"{"leds": {"backend": "gpiod", "map": [{"name": "red", "role": "alert", "chip": "gpiochip0", "line": 17}]}}"#)
        let failing = try runPimesh(["selftest", "--config", gpiod, "--data-dir", LeadProcess.scratchDirectory()])
        #expect(failing.status == 1)
        #expect(failing.output.contains("FAIL  leds.gpiod"))
    }

    @Test func theDocsPicturesAreTheOnesThePatternsDraw() throws {
        let out = LeadProcess.scratchDirectory()
        let result = try runPimesh(["leds", "svg", "--all", "--out", out])
        #expect(result.status == 0)
        // One picture goes to stdout, and nothing is written into the working directory.
        let one = try runPimesh(["leds", "svg", "liveness"], directory: out)
        #expect(one.status == 0)
        #expect(one.output.hasPrefix("<svg") || one.output.hasPrefix("<?xml"))
        #expect(!FileManager.default.fileExists(atPath: out + "/docs"))
        let bare = try runPimesh(["leds", "svg"], directory: out)
        #expect(bare.status != 0)
        #expect(bare.output.contains("name a picture (liveness, levels, alerts) or give --all --out DIR"))
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/leds").path
        for file in ["liveness.svg", "levels.svg", "alerts.svg"] {
            #expect(read(out + "/" + file) == read(docs + "/" + file), "docs/leds/\(file) is stale: run pimesh leds svg --all --out docs/leds")
        }
    }
}

struct SelftestReport: Decodable {
    struct Result: Decodable {
        var check: String
        var result: String
        var detail: String
    }

    var results: [Result]
    var failed: Int
}
