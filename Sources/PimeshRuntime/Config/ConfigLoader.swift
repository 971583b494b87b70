import PimeshAgent
import PimeshCore
import PimeshRelease
import PimeshSystem

/// Reads `pimesh.json`: every key optional, unknown keys refused by name (DESIGN.md §8).
public enum ConfigLoader {
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Reads the file over `base`: keys in the file replace the base's values, the rest stay.
    /// `trusted`: the lead's own config (it names the agents dir, the upload target, the keys
    /// a release must be signed with)
    /// is refused when another user than the lead's or root owns it or others may write it
    /// (TrustedFile); the CLI, which only looks up where the lead is, reads it as it is.
    public static func load(path: String, base: LeadConfig = LeadConfig(), trusted: Bool = false) throws -> LeadConfig {
        let bytes: [UInt8]
        do {
            bytes = try trusted ? TrustedFile.read(path: path, limit: 1 << 20) : FileIO.read(path: path, limit: 1 << 20)
        } catch let untrusted as TrustedFile.Untrusted {
            throw ConfigError(file: path, key: "", line: nil, reason: untrusted.description)
        } catch {
            throw ConfigError(file: path, key: "", line: nil, reason: "cannot read: \(error)")
        }
        return try parse(text: ConfigReader.text(of: bytes, file: path), file: path, base: base)
    }

    /// Where the manifests are when the config file names no `supervision.agents_dir`:
    /// `agents.d` beside the file, so that /etc/pimesh/pimesh.json means /etc/pimesh/agents.d.
    public static func agentsDir(besideConfig file: String) -> String {
        let directory = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
        return (directory.isEmpty ? "" : directory) + "/agents.d"
    }

    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    public static func parse(text: String, file: String, base: LeadConfig = LeadConfig()) throws(ConfigError) -> LeadConfig {
        let root = try ConfigReader(file: file, text: text)
        try root.rejectUnknownKeys(allowed: ["data_dir", "run_dir", "log_level", "stop_deadline_s", "api", "heartbeat", "agents", "store", "node", "tasks", "coordination", "leds", "supervision", "snapshots", "upload", "audit", "incidents", "update"])
        var config = base
        if let dir = try root.string("data_dir") { config.dataDir = dir }
        if let dir = try root.string("run_dir") { config.runDir = dir }
        if let level = try root.string("log_level") {
            guard logLevels.contains(level) else {
                throw root.error("log_level", "\"\(level)\" is not one of \(logLevels.joined(separator: ", "))")
            }
            config.logLevel = level
        }
        if let deadline = try root.int("stop_deadline_s", in: 2...3600) { config.stopDeadlineS = deadline }
        if let api = try root.section("api") {
            try api.rejectUnknownKeys(allowed: ["host", "port", "unix_socket", "max_connections", "idle_timeout_s"])
            if let count = try api.int("max_connections", in: 16...65_536) { config.api.maxConnections = count }
            if let seconds = try api.int("idle_timeout_s", in: 1...3600) { config.api.idleTimeoutS = seconds }
            if let host = try api.string("host") { config.api.host = try loopbackHost(host, reader: api, key: "host") }
            if let port = try api.int("port", in: 0...65535) { config.api.port = port }
            if let flag = try api.bool("unix_socket") { config.api.unixSocket = flag }
        }
        if let heartbeat = try root.section("heartbeat") {
            try heartbeat.rejectUnknownKeys(allowed: [
                "host", "port", "unix_socket", "interval_ms", "stale_after_ms", "max_clock_skew_ms",
            ])
            if let host = try heartbeat.string("host") {
                config.heartbeat.host = try loopbackHost(host, reader: heartbeat, key: "host")
            }
            if let port = try heartbeat.int("port", in: 0...65535) { config.heartbeat.port = port }
            if let flag = try heartbeat.bool("unix_socket") { config.heartbeat.unixSocket = flag }
            if let ms = try heartbeat.int("interval_ms", in: 10...60_000) { config.heartbeat.intervalMs = ms }
            let staleGiven = try heartbeat.int("stale_after_ms", in: 20...600_000)
            if let staleGiven { config.heartbeat.staleAfterMs = staleGiven }
            if let ms = try heartbeat.int("max_clock_skew_ms", in: 1000...3_600_000) { config.heartbeat.maxClockSkewMs = ms }
            // Named by the key the file has: an interval past the default stale_after_ms.
            if config.heartbeat.staleAfterMs <= config.heartbeat.intervalMs {
                throw staleGiven == nil
                    ? heartbeat.error(
                        "interval_ms", "must be shorter than stale_after_ms (\(config.heartbeat.staleAfterMs), its default): set heartbeat.stale_after_ms too")
                    : heartbeat.error(
                        "stale_after_ms", "must be longer than interval_ms (\(config.heartbeat.intervalMs)), or every agent would flap to TRANSIT")
            }
        }
        if let agents = try root.section("agents") {
            try agents.rejectUnknownKeys(allowed: ["expire_after_s", "max_registered", "registrations_per_s", "registration_burst"])
            if let burst = try agents.int("registration_burst", in: 1...100_000) { config.agents.registrationBurst = burst }
            if let seconds = try agents.int("expire_after_s", in: 1...31_536_000) { config.agents.expireAfterS = seconds }
            if let count = try agents.int("max_registered", in: 1...65_536) { config.agents.maxRegistered = count }
            if let rate = try agents.int("registrations_per_s", in: 1...100_000) { config.agents.registrationsPerS = rate }
        }
        if let store = try root.section("store") {
            try store.rejectUnknownKeys(allowed: ["commit_interval_ms", "checkpoint_interval_s", "durable_commit_delay_ms", "write_budget_mb_per_day"])
            if let mb = try store.int("write_budget_mb_per_day", in: 0...1_048_576) { config.store.writeBudgetMBPerDay = mb }
            if let ms = try store.int("durable_commit_delay_ms", in: 0...1000) { config.store.durableCommitDelayMs = ms }
            if let ms = try store.int("commit_interval_ms", in: 1...10_000) { config.store.commitIntervalMs = ms }
            if let s = try store.int("checkpoint_interval_s", in: 10...86_400) { config.store.checkpointIntervalS = s }
        }
        if let node = try root.section("node") {
            try node.rejectUnknownKeys(allowed: ["probe_interval_ms", "code_trim_interval_s", "proc_root", "sys_root"])
            if let ms = try node.int("probe_interval_ms", in: 100...60_000) { config.node.probeIntervalMs = ms }
            if let s = try node.int("code_trim_interval_s", in: 0...86_400) { config.node.codeTrimIntervalS = s }
            if let root = try node.string("proc_root") { config.node.procRoot = root }
            if let root = try node.string("sys_root") { config.node.sysRoot = root }
        }
        if let tasks = try root.section("tasks") {
            try tasks.rejectUnknownKeys(allowed: [
                "lease_ms", "max_attempts", "long_poll_max_ms", "max_open", "retain_finished_s", "retain_finished_count",
                "max_stored_mb", "recent_ram_kb", "work_datagrams", "default_ttl_ms",
            ])
            if let ms = try tasks.int("default_ttl_ms", in: 1_000...86_400_000) { config.tasks.defaultTTLMs = ms }
            if let on = try tasks.bool("work_datagrams") { config.tasks.workDatagrams = on }
            if let count = try tasks.int("max_open", in: 1...1_000_000) { config.tasks.maxOpen = count }
            if let seconds = try tasks.int("retain_finished_s", in: 60...315_360_000) { config.tasks.retainFinishedS = seconds }
            if let count = try tasks.int("retain_finished_count", in: 0...10_000_000) { config.tasks.retainFinishedCount = count }
            if let mb = try tasks.int("max_stored_mb", in: 1...65_536) { config.tasks.maxStoredMB = mb }
            if let kb = try tasks.int("recent_ram_kb", in: 64...1_048_576) { config.tasks.recentRAMKB = kb }
            if let ms = try tasks.int("lease_ms", in: 100...86_400_000) { config.tasks.leaseMs = ms }
            if let n = try tasks.int("max_attempts", in: 1...100) { config.tasks.maxAttempts = n }
            if let ms = try tasks.int("long_poll_max_ms", in: 0...300_000) { config.tasks.longPollMaxMs = ms }
        }
        if let coordination = try root.section("coordination") {
            try coordination.rejectUnknownKeys(allowed: [
                "arrival_window_ms", "bucket_ms", "minimum_response_ratio", "timeout_ms", "required_ready_rate",
                "max_conflict_rate", "max_transit_rate",
            ])
            if let ms = try coordination.int("arrival_window_ms", in: 20...60_000) { config.coordination.arrivalWindowMs = ms }
            if let ms = try coordination.int("bucket_ms", in: 1...1000) { config.coordination.bucketMs = ms }
            if let r = try coordination.double("minimum_response_ratio", in: 0...1) { config.coordination.minimumResponseRatio = r }
            if let ms = try coordination.int("timeout_ms", in: 50...120_000) { config.coordination.timeoutMs = ms }
            if let r = try coordination.double("required_ready_rate", in: 0...1) { config.coordination.requiredReadyRate = r }
            if let r = try coordination.double("max_conflict_rate", in: 0...1) { config.coordination.maxConflictRate = r }
            if let r = try coordination.double("max_transit_rate", in: 0...1) { config.coordination.maxTransitRate = r }
        }
        if let leds = try root.section("leds") {
            try leds.rejectUnknownKeys(allowed: ["backend", "sysfs_root", "map", "refresh_ms"])
            if let backend = try leds.string("backend") {
                guard LEDConfiguration.backends.contains(backend) else {
                    throw leds.error("backend", "\"\(backend)\" is not one of \(LEDConfiguration.backends.joined(separator: ", "))")
                }
                config.leds.backend = backend
            }
            if let root = try leds.string("sysfs_root") { config.leds.sysfsRoot = root }
            if let ms = try leds.int("refresh_ms", in: 100...60_000) { config.leds.refreshMs = ms }
            if let entries = try leds.objects("map") {
                config.leds.map = []
                for entry in entries {
                    try entry.rejectUnknownKeys(allowed: ["name", "role", "chip", "line", "active_low"])
                    guard let name = try entry.string("name") else { throw entry.error("name", "is required") }
                    guard let role = try entry.string("role") else { throw entry.error("role", "is required") }
                    guard LEDRole(rawValue: role) != nil else {
                        throw entry.error("role", "\"\(role)\" is not one of \(LEDRole.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    config.leds.map.append(
                        LeadConfig.LEDMapping(
                            name: name, role: role, chip: try entry.string("chip"), line: try entry.int("line", in: 0...4095),
                            activeLow: try entry.bool("active_low") ?? false))
                }
            }
            if config.leds.backend == "gpiod" {
                if config.leds.map.isEmpty { throw leds.error("map", "the gpiod backend needs a map: each LED's chip and line") }
                for (index, entry) in config.leds.map.enumerated() where entry.chip == nil || entry.line == nil {
                    throw leds.error("map", "entry \(index) (\(entry.name)) needs \"chip\" and \"line\" for the gpiod backend")
                }
            }
        }
        if let supervision = try root.section("supervision") {
            try supervision.rejectUnknownKeys(allowed: [
                "agents_dir", "log_max_kb", "log_rate_kb_s", "stop_timeout_s", "phi_threshold", "acceptable_pause_ms", "min_std_dev_ms",
                "start_grace_ms", "hang_after_ms", "loop_after_ms", "heal_after_ms", "ram_budget_mb", "work_stealing", "cgroup_root",
                "tick_ms",
            ])
            if let dir = try supervision.string("agents_dir") { config.supervision.agentsDir = dir }
            if let kb = try supervision.int("log_max_kb", in: 4...1_048_576) { config.supervision.logMaxKB = kb }
            if let kb = try supervision.int("log_rate_kb_s", in: 1...1_048_576) { config.supervision.logRateKBPerS = kb }
            if let s = try supervision.int("stop_timeout_s", in: 1...600) { config.supervision.stopTimeoutS = s }
            if let phi = try supervision.double("phi_threshold", in: 1...50) { config.supervision.phiThreshold = phi }
            if let ms = try supervision.int("acceptable_pause_ms", in: 0...60_000) { config.supervision.acceptablePauseMs = ms }
            if let ms = try supervision.int("min_std_dev_ms", in: 1...60_000) { config.supervision.minStdDevMs = ms }
            if let ms = try supervision.int("start_grace_ms", in: 100...600_000) { config.supervision.startGraceMs = ms }
            if let ms = try supervision.int("hang_after_ms", in: 100...3_600_000) { config.supervision.hangAfterMs = ms }
            if let ms = try supervision.int("loop_after_ms", in: 100...3_600_000) { config.supervision.loopAfterMs = ms }
            if let ms = try supervision.int("heal_after_ms", in: 0...3_600_000) { config.supervision.healAfterMs = ms }
            if let mb = try supervision.int("ram_budget_mb", in: 0...1_048_576) { config.supervision.ramBudgetMB = mb }
            if let flag = try supervision.bool("work_stealing") { config.supervision.workStealing = flag }
            if let root = try supervision.string("cgroup_root") { config.supervision.cgroupRoot = root }
            if let ms = try supervision.int("tick_ms", in: 10...1000) { config.supervision.tickMs = ms }
        }
        if let incidents = try root.section("incidents") {
            try incidents.rejectUnknownKeys(allowed: ["observation_window_s", "mass_failure_sustain_s", "playbooks_dir", "emergency_min_running"])
            if let dir = try incidents.string("playbooks_dir") { config.incidents.playbooksDir = dir }
            if let share = try incidents.double("emergency_min_running", in: 0...1) { config.incidents.emergencyMinRunning = share }
            if let s = try incidents.int("observation_window_s", in: 1...86_400) { config.incidents.observationWindowS = s }
            if let s = try incidents.int("mass_failure_sustain_s", in: 0...3600) { config.incidents.massFailureSustainS = s }
        }
        if let audit = try root.section("audit") {
            try audit.rejectUnknownKeys(allowed: ["head_every_rows", "retain_days"])
            if let n = try audit.int("head_every_rows", in: 1...1_000_000) { config.audit.headEveryRows = n }
            if let days = try audit.int("retain_days", in: 0...36_500) { config.audit.retainDays = days }
        }
        if let snapshots = try root.section("snapshots") {
            try snapshots.rejectUnknownKeys(allowed: ["interval_s", "spool_max_count", "spool_max_mb"])
            if let s = try snapshots.int("interval_s", in: 0...31_536_000) {
                guard s == 0 || s >= 60 else { throw snapshots.error("interval_s", "\(s) is too often: 0 (off) or at least 60") }
                config.snapshots.intervalS = s
            }
            if let n = try snapshots.int("spool_max_count", in: 1...10_000) { config.snapshots.spoolMaxCount = n }
            if let mb = try snapshots.int("spool_max_mb", in: 1...1_048_576) { config.snapshots.spoolMaxMB = mb }
        }
        if let update = try root.section("update") {
            try update.rejectUnknownKeys(allowed: ["trusted_keys", "soak_s", "ready_timeout_s", "unit", "keep_releases", "max_release_mb"])
            if let keys = try update.strings("trusted_keys", maxCount: 16) {
                for (index, key) in keys.enumerated() {
                    guard ReleaseStore.isDigest(key.lowercased()) else {
                        throw update.error("trusted_keys", "entry \(index) is not an Ed25519 public key (64 hex digits)")
                    }
                    if let weakness = Ed25519Encoding.weakness(of: Hex.decode(key)!) {
                        throw update.error("trusted_keys", "entry \(index) cannot be trusted: \(weakness); use the public key `pimesh update keygen` printed")
                    }
                    if keys[..<index].contains(where: { $0.lowercased() == key.lowercased() }) {
                        throw update.error("trusted_keys", "entry \(index) repeats an earlier entry")
                    }
                }
                config.update.trustedKeys = keys.map { $0.lowercased() }
            }
            if let s = try update.int("soak_s", in: 0...86_400) { config.update.soakS = s }
            if let s = try update.int("ready_timeout_s", in: 1...3600) { config.update.readyTimeoutS = s }
            if let unit = try update.string("unit") {
                guard unit.hasSuffix(".service"), unit.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != 47 }) else {
                    throw update.error("unit", "\"\(unit)\" is not a systemd service name (NAME.service)")
                }
                config.update.unit = unit
            }
            if let n = try update.int("keep_releases", in: 0...100) { config.update.keepReleases = n }
            if let mb = try update.int("max_release_mb", in: 1...4096) { config.update.maxReleaseMB = mb }
        }
        if let upload = try root.section("upload") {
            try upload.rejectUnknownKeys(allowed: ["target", "url", "directory", "s3", "retry_initial_ms", "retry_max_s"])
            if let target = try upload.string("target") {
                guard ["none", "coordinator", "s3", "directory"].contains(target) else {
                    throw upload.error("target", "\"\(target)\" is not one of none, coordinator, s3, directory")
                }
                config.upload.target = target
            }
            if let url = try upload.string("url") {
                guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw upload.error("url", "must start with http:// or https://") }
                config.upload.url = url
            }
            if let directory = try upload.string("directory") {
                guard directory.hasPrefix("/") else { throw upload.error("directory", "must be an absolute path") }
                config.upload.directory = directory
            }
            if let s3 = try upload.section("s3") {
                try s3.rejectUnknownKeys(allowed: ["endpoint", "bucket", "region", "prefix", "access_key_id", "secret_access_key"])
                if let endpoint = try s3.string("endpoint") {
                    guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
                        throw s3.error("endpoint", "must start with http:// or https://")
                    }
                    config.upload.s3Endpoint = endpoint
                }
                config.upload.s3Bucket = try s3.string("bucket") ?? config.upload.s3Bucket
                config.upload.s3Region = try s3.string("region") ?? config.upload.s3Region
                config.upload.s3Prefix = try s3.string("prefix", nonEmpty: false) ?? config.upload.s3Prefix
                config.upload.s3AccessKeyID = try s3.string("access_key_id") ?? config.upload.s3AccessKeyID
                config.upload.s3SecretAccessKey = try s3.string("secret_access_key") ?? config.upload.s3SecretAccessKey
            }
            if let ms = try upload.int("retry_initial_ms", in: 10...3_600_000) { config.upload.retryInitialMs = ms }
            if let s = try upload.int("retry_max_s", in: 1...86_400) { config.upload.retryMaxS = s }
            switch config.upload.target {
            case "coordinator" where config.upload.url == nil:
                throw upload.error("url", "is required when target is coordinator")
            case "directory" where config.upload.directory == nil:
                throw upload.error("directory", "is required when target is directory")
            case "s3" where config.upload.s3Endpoint == nil || config.upload.s3Bucket == nil:
                throw upload.error("s3", "needs endpoint and bucket when target is s3")
            default:
                break
            }
        }
        return config
    }

    /// The API and heartbeat sockets are for this Pi only: binding them elsewhere would expose
    /// registration and heartbeats to the network.
    static func loopbackHost(_ host: String, reader: ConfigReader, key: String) throws(ConfigError) -> String {
        let parts = host.split(separator: ".")
        let isLoopbackV4 = parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
        guard isLoopbackV4 else {
            throw reader.error(key, "\"\(host)\" is not a loopback IPv4 address (127.x.x.x); the lead serves this Pi only")
        }
        return host
    }
}
