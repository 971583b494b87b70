import Testing

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
