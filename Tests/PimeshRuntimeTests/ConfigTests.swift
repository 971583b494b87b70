import PimeshSystem
import Testing
import PimeshAgent
import PimeshTestSupport

@testable import PimeshRuntime

@Suite struct ConfigTests {
    func parse(_ text: String) throws(ConfigError) -> LeadConfig {
        try ConfigLoader.parse(text: text, file: "pimesh.json")
    }

    func error(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func emptyObjectGivesDefaults() throws {
        let config = try parse("{}")
        #expect(config == LeadConfig())
        #expect(config.heartbeat.intervalMs == 250)
        #expect(config.store.commitIntervalMs == 50)
        #expect(config.resolvedRunDir == "./.pimesh/run")
    }

    @Test func everyKeyIsRead() throws {
        let config = try parse(
            """
            {
              "data_dir": "/var/lib/pimesh", "run_dir": "/run/pimesh", "log_level": "debug",
              "api": {"host": "127.0.0.1", "port": 8000, "unix_socket": false},
              "heartbeat": {"host": "127.0.0.2", "port": 8001, "unix_socket": false, "interval_ms": 100,
                            "stale_after_ms": 500, "max_clock_skew_ms": 5000},
              "store": {"commit_interval_ms": 20, "checkpoint_interval_s": 60, "durable_commit_delay_ms": 0},
              "node": {"probe_interval_ms": 2000, "code_trim_interval_s": 0, "proc_root": "/p", "sys_root": "/s"},
              "tasks": {"lease_ms": 5000, "max_attempts": 5, "long_poll_max_ms": 1000},
              "coordination": {"arrival_window_ms": 300, "bucket_ms": 5, "minimum_response_ratio": 0.9, "timeout_ms": 2000,
                               "required_ready_rate": 0.9, "max_conflict_rate": 0.1, "max_transit_rate": 0.2}
            }
            """)
        #expect(config.dataDir == "/var/lib/pimesh")
        #expect(config.resolvedRunDir == "/run/pimesh")
        #expect(config.api.port == 8000 && !config.api.unixSocket)
        #expect(config.heartbeat.host == "127.0.0.2" && config.heartbeat.intervalMs == 100)
        #expect(config.heartbeat.staleAfterMs == 500 && config.heartbeat.maxClockSkewMs == 5000)
        #expect(config.store.checkpointIntervalS == 60)
        #expect(config.node.procRoot == "/p" && config.logLevel == "debug")
        #expect(config.node.codeTrimIntervalS == 0)
        #expect(config.store.durableCommitDelayMs == 0)
        #expect(config.tasks.leaseMs == 5000 && config.tasks.maxAttempts == 5 && config.tasks.longPollMaxMs == 1000)
        let c = config.coordination
        #expect(c.arrivalWindowMs == 300 && c.bucketMs == 5 && c.minimumResponseRatio == 0.9 && c.timeoutMs == 2000)
        #expect(c.requiredReadyRate == 0.9 && c.maxConflictRate == 0.1 && c.maxTransitRate == 0.2)
    }

    @Test func fileOverridesItsBaseOnlyWhereItSpeaks() throws {
        var base = LeadConfig()
        base.dataDir = "/from/environment"
        #expect(try ConfigLoader.parse(text: "{}", file: "f", base: base).dataDir == "/from/environment")
        #expect(try ConfigLoader.parse(text: #"{"data_dir": "/from/file"}"#, file: "f", base: base).dataDir == "/from/file")
    }

    @Test func unknownKeyIsNamedWithItsLine() {
        let failure = error("{\n  \"api\": {\n    \"port\": 1,\n    \"prot\": 2\n  }\n}")
        #expect(failure?.key == "api.prot")
        #expect(failure?.line == 4)
        #expect(failure?.description.contains("pimesh.json:4: key \"api.prot\": unknown key") == true)
    }

    @Test(arguments: [
        (#"{"api": {"port": 70000}}"#, "api.port", "out of range"),
        (#"{"api": {"port": "80"}}"#, "api.port", "whole number"),
        (#"{"api": {"port": 1.5}}"#, "api.port", "fraction"),
        (#"{"api": {"host": "0.0.0.0"}}"#, "api.host", "loopback"),
        (#"{"heartbeat": {"interval_ms": 250, "stale_after_ms": 200}}"#, "heartbeat.stale_after_ms", "longer than interval_ms"),
        (#"{"heartbeat": {"interval_ms": 2000}}"#, "heartbeat.interval_ms", "shorter than stale_after_ms (1000, its default): set heartbeat.stale_after_ms too"),
        (#"{"log_level": "loud"}"#, "log_level", "not one of"),
        (#"{"store": 5}"#, "store", "must be an object"),
        (#"{"data_dir": ""}"#, "data_dir", "must not be empty"),
        (#"{"api": {"unix_socket": "yes"}}"#, "api.unix_socket", "true or false"),
        (#"{"tasks": {"max_attempts": 0}}"#, "tasks.max_attempts", "out of range"),
        (#"{"leds": {"backend": "blinkenlights"}}"#, "leds.backend", "not one of"),
        (#"{"leds": {"map": [{"name": "ACT", "role": "party"}]}}"#, "leds.map[0].role", "not one of"),
        (#"{"leds": {"map": [{"role": "alert"}]}}"#, "leds.map[0].name", "is required"),
        (#"{"leds": {"map": [{"name": "x", "role": "alert", "pin": 4}]}}"#, "leds.map[0].pin", "unknown key"),
        (#"{"leds": {"map": {"name": "x"}}}"#, "leds.map", "array of objects"),
        (#"{"leds": {"backend": "gpiod"}}"#, "leds.map", "needs a map"),
        (#"{"leds": {"backend": "gpiod", "map": [{"name": "red", "role": "alert", "chip": "gpiochip0"}]}}"#, "leds.map", "needs \"chip\" and \"line\""),
        (#"{"leds": {"map": [{"name": "red", "role": "alert", "line": 9000}]}}"#, "leds.map[0].line", "out of range"),
        (#"{"tasks": {"lease": 5}}"#, "tasks.lease", "unknown key"),
        (#"{"coordination": {"max_conflict_rate": 1.5}}"#, "coordination.max_conflict_rate", "out of range"),
        (#"{"coordination": {"required_ready_rate": "high"}}"#, "coordination.required_ready_rate", "must be a number"),
    ])
    func badValuesAreNamed(text: String, key: String, reason: String) {
        let failure = error(text)
        #expect(failure?.key == key)
        #expect(failure?.reason.contains(reason) == true, "\(String(describing: failure))")
    }

    @Test func updateKeysAreReadAndBadOnesNamed() throws {
        let key = String(repeating: "ab", count: 32)
        let config = try parse(#"{"update": {"trusted_keys": ["\#(key.uppercased())"], "soak_s": 5, "ready_timeout_s": 9, "unit": "lead.service", "keep_releases": 1, "max_release_mb": 64}}"#)
        #expect(config.update == .init(trustedKeys: [key], soakS: 5, readyTimeoutS: 9, unit: "lead.service", keepReleases: 1, maxReleaseMB: 64))
        #expect(LeadConfig().update.trustedKeys.isEmpty)
        #expect(error(#"{"update": {"trusted_keys": ["\#(key)", "abc"]}}"#)?.description.contains("key \"update.trusted_keys\": entry 1 is not an Ed25519 public key") == true)
        #expect(error(#"{"update": {"trusted_keys": "\#(key)"}}"#)?.description.contains("must be an array of strings") == true)
        // A placeholder of zeros, the identity point, a non-canonical y: anyone could sign for them.
        for weak in [String(repeating: "0", count: 64), "01" + String(repeating: "0", count: 62), "ed" + String(repeating: "ff", count: 30) + "7f"] {
            let failure = error(#"{"update": {"trusted_keys": ["\#(key)", "\#(weak)"]}}"#)?.description ?? ""
            #expect(failure.contains("entry 1 cannot be trusted"), "\(weak): \(failure)")
        }
        #expect(error(#"{"update": {"trusted_keys": ["\#(key)", "\#(key.uppercased())"]}}"#)?.description.contains("entry 1 repeats an earlier entry") == true)
        #expect(error(#"{"update": {"unit": "../evil"}}"#)?.description.contains("is not a systemd service name") == true)
        #expect(error(#"{"update": {"soak_s": -1}}"#)?.description.contains("update.soak_s") == true)
        let many = Array(repeating: "\"\(key)\"", count: 17).joined(separator: ",")
        #expect(error(#"{"update": {"trusted_keys": [\#(many)]}}"#)?.description.contains("at most 16") == true)
    }

    @Test func ledMapIsRead() throws {
        let config = try parse(
            """
            {"leds": {"backend": "gpiod", "refresh_ms": 500, "sysfs_root": "/x",
                      "map": [{"name": "green", "role": "liveness", "chip": "gpiochip0", "line": 17},
                              {"name": "red", "role": "alert", "chip": "/dev/gpiochip0", "line": 27, "active_low": true}]}}
            """)
        #expect(config.leds.backend == "gpiod" && config.leds.refreshMs == 500 && config.leds.sysfsRoot == "/x")
        #expect(config.leds.map == [
            .init(name: "green", role: "liveness", chip: "gpiochip0", line: 17),
            .init(name: "red", role: "alert", chip: "/dev/gpiochip0", line: 27, activeLow: true),
        ])
    }

    @Test func brokenJSONIsReported() {
        let failure = error("{\"api\": ")
        #expect(failure?.reason.hasPrefix("not valid JSON") == true)
        #expect(error("[1, 2]")?.reason.contains("must be an object") == true)
    }

    /// What an operator sees for the mistakes hand-edited JSON has: the file, line and column,
    /// and what was expected there, in the form editors jump to.
    @Test func aSyntaxErrorNamesTheLineAndColumnAndWhatWasExpected() {
        let missingComma = error("{\n  \"log_level\": \"info\"\n  \"data_dir\": \"/var/lib/pimesh\"\n}")
        #expect(missingComma?.description == "pimesh.json:3:3: not valid JSON: expected ',' or '}' after the value of \"log_level\", found '\"'")

        let unclosed = error("{\"api\": {\"port\": 7400}")
        #expect(unclosed?.line == 1)
        #expect(unclosed?.column == 23)
        #expect(unclosed?.reason.contains("expected ',' or '}'") == true)
        #expect(unclosed?.reason.contains("found the end of the document") == true)

        let bareWord = error("{\"log_level\": info}")
        #expect(bareWord?.description == "pimesh.json:1:15: not valid JSON: expected a value (object, array, string, number, true, false or null), found 'i'")

        // Columns count characters: the "é" before the mistake is two bytes and one column.
        let accented = error("{\"data_dir\": \"/srv/é\", }")
        #expect(accented?.line == 1)
        #expect(accented?.column == 24)
    }

    @Test func duplicateKeysAndTrailingCommasAreErrorsThatNameTheKeyAndLine() {
        let duplicate = error("{\n  \"log_level\": \"info\",\n  \"log_level\": \"debug\"\n}")
        #expect(duplicate?.description == "pimesh.json:3: not valid JSON: duplicate key \"log_level\" (first at line 2); each key may appear once")

        let nested = error("{\"api\": {\"port\": 1,\n \"port\": 2}}")
        #expect(nested?.line == 2)
        #expect(nested?.reason.contains("duplicate key \"port\"") == true)

        let trailingInObject = error("{\n  \"log_level\": \"info\",\n}")
        #expect(trailingInObject?.description == "pimesh.json:3:1: not valid JSON: trailing comma before '}'; remove the last ','")
        let trailingInArray = error("{\"tasks\": [1, 2, ]}")
        #expect(trailingInArray?.reason.contains("trailing comma before ']'") == true)
    }

    @Test func theStrictParserReadsEveryValidFormAndRefusesTheRest() throws {
        let value = try JSONValue.parse(Array(#"\#u{FEFF}{"a": [1, -2.5e3, 0, true, false, null], "b": "tab\t \u00e9 \ud83d\ude00 \/", "c": {}}"#.utf8))
        #expect(
            value
                == .object([
                    "a": .array([.number(1), .number(-2500), .number(0), .bool(true), .bool(false), .null]),
                    "b": .string("tab\t é 😀 /"), "c": .object([:]),
                ]))
        for (text, reason) in [
            ("", "the document is empty"), ("{} {}", "expected the end of the document"), ("[01]", "may not start with 0"),
            ("[1.]", "after the decimal point"), ("[1e]", "in the exponent"), ("[\"a\nb\"]", "not closed before the end of the line"),
            ("[\"\\x\"]", "unknown escape"), ("[\"\\ud800\"]", "low one"), ("[tru]", "expected true"), ("{1: 2}", "expected a key"),
            ("{\"a\" 1}", "expected ':'"), ("[1e999]", "too large"), (String(repeating: "[", count: 65) + String(repeating: "]", count: 65), "deeper than 64"),
        ] {
            do {
                _ = try JSONValue.parse(Array(text.utf8))
                Issue.record("\(text) was accepted")
            } catch {
                #expect(error.message.contains(reason), "\(text): \(error.message)")
            }
        }
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x5B, 0x22, 0xFF, 0x22, 0x5D]) }
    }
}

@Suite struct SupervisionConfigTests {
    @Test func supervisionKeys() throws {
        let config = try ConfigLoader.parse(
            text: """
                {"supervision": {"agents_dir": "/etc/pimesh/agents.d", "log_max_kb": 64, "stop_timeout_s": 2, "phi_threshold": 10,
                 "acceptable_pause_ms": 100, "min_std_dev_ms": 30, "start_grace_ms": 3000, "hang_after_ms": 1000,
                 "loop_after_ms": 5000, "heal_after_ms": 500, "ram_budget_mb": 1024, "work_stealing": false,
                 "cgroup_root": "/tmp/cg", "tick_ms": 50}}
                """, file: "pimesh.json")
        let s = config.supervision
        #expect(s.agentsDir == "/etc/pimesh/agents.d")
        #expect(s.logMaxKB == 64 && s.stopTimeoutS == 2 && s.phiThreshold == 10 && s.acceptablePauseMs == 100)
        #expect(s.minStdDevMs == 30 && s.startGraceMs == 3000 && s.hangAfterMs == 1000 && s.loopAfterMs == 5000)
        #expect(s.healAfterMs == 500 && s.ramBudgetMB == 1024 && !s.workStealing && s.cgroupRoot == "/tmp/cg" && s.tickMs == 50)
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text: #"{"supervision": {"phi": 1}}"#, file: "p.json") }
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(text: #"{"supervision": {"tick_ms": 0}}"#, file: "p.json") }
    }

    @Test func ramBudgetDefaultsToSixtyPercent() {
        #expect(Lead.ramBudget(configuredMB: nil, memoryTotal: 1000) == 600)
        #expect(Lead.ramBudget(configuredMB: 0, memoryTotal: 1000) == nil)
        #expect(Lead.ramBudget(configuredMB: 2, memoryTotal: 1000) == 2 << 20)
        #expect(Lead.ramBudget(configuredMB: nil, memoryTotal: nil) == nil)
    }
}

/// `sudo pimesh status` on a Pi: the CLI looks where the unit runs the lead.
@Suite struct DataDirLocatorTests {
    let scratch = Scratch.directory("pimesh-locator", mode: 0o755)

    @Test func flagThenEnvironmentThenConfigThenDefault() throws {
        let system = scratch + "/pimesh.json"
        try FileIO.writeAtomically(path: system, bytes: Array(#"{"data_dir": "\#(scratch)/data"}"#.utf8))
        let locate = { (dataDir: String?, config: String?, environment: [String: String]) in
            try DataDirLocator.candidates(dataDir: dataDir, config: config, environment: environment, systemConfig: system).map(\.dataDir)
        }
        #expect(try locate("/flag", nil, ["PIMESH_DATA_DIR": "/env"]) == ["/flag"])
        #expect(try locate(nil, nil, ["PIMESH_DATA_DIR": "/env"]) == ["/env"])
        #expect(try locate(nil, nil, [:]) == [scratch + "/data", "./.pimesh"])
        #expect(try DataDirLocator.candidates(dataDir: nil, config: nil, environment: [:], systemConfig: scratch + "/absent.json").map(\.dataDir) == ["./.pimesh"])

        // An explicit --config is authoritative, even when it names no data_dir.
        let other = scratch + "/other.json"
        try FileIO.writeAtomically(path: other, bytes: Array("{}".utf8))
        #expect(try locate(nil, other, [:]) == ["./.pimesh"])

        // Of the config's and the default, the one with a lead.json wins; with neither the error
        // names every place it looked and never suggests starting a lead.
        do {
            _ = try DataDirLocator.locate(dataDir: nil, config: nil, environment: [:], systemConfig: system)
            Issue.record("found a lead where there is none")
        } catch {
            let text = "\(error)"
            #expect(text.contains("looked for lead.json in \(scratch)/data (data_dir of \(system)), ./.pimesh (the default)"))
            #expect(!text.contains("pimesh run --data-dir"))
        }
        try FileIO.makeDirectories(scratch + "/data")
        try FileIO.writeAtomically(path: scratch + "/data/lead.json", bytes: Array("{}".utf8))
        #expect(try DataDirLocator.locate(dataDir: nil, config: nil, environment: [:], systemConfig: system) == scratch + "/data")

        // A broken config is a config error, with its place.
        try FileIO.writeAtomically(path: system, bytes: Array("{\"data_dir\": }".utf8))
        #expect(throws: ConfigError.self) { try locate(nil, nil, [:]) }
    }
}
