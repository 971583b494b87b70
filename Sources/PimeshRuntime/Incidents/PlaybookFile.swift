import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem

/// Playbooks as JSON: the built-in ones (below) and the operator's `playbooks.d/*.json`, read by
/// one parser, so a built-in playbook is also the example of the format. docs/incidents.md
/// lists every key; a bad file is refused with its file, line, key and reason.
public enum PlaybookFile {
    public static let maxFiles = 64
    public static let maxFileBytes = 64 << 10
    static let keys: Set<String> = ["id", "title", "when", "slo_s", "min_recovered", "steps"]
    static let whenKeys: Set<String> = ["causes", "min_severity"]
    static let stepKeys: Set<String> = ["name", "action", "timeout_s", "retries", "required", "tier", "min_running", "count", "target"]

    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    public static func parse(text: String, file: String, source: String? = nil) throws(ConfigError) -> Playbook {
        let root = try ConfigReader(file: file, text: text)
        try root.rejectUnknownKeys(allowed: keys)
        guard let id = try root.string("id") else { throw root.error("id", "is required") }
        guard RegistrationRequest.isIdentifier(id, allowUppercase: false), id.utf8.count <= 64 else {
            throw root.error("id", "\"\(id)\" must be 1–64 characters of lowercase letters, digits, '.', '_' or '-'")
        }
        let title = try root.string("title") ?? id
        guard title.utf8.count <= 200 else { throw root.error("title", "is longer than 200 bytes") }
        guard let when = try root.section("when") else { throw root.error("when", "is required: which incidents the playbook answers") }
        try when.rejectUnknownKeys(allowed: whenKeys)
        guard let causes = try when.strings("causes", maxCount: 32), !causes.isEmpty else {
            throw when.error("causes", "is required: cause prefixes such as \"agent_down:\" or \"critical_agents_down\"")
        }
        for cause in causes where cause.isEmpty || cause.utf8.count > 100 {
            throw when.error("causes", "each cause prefix must be 1–100 bytes")
        }
        var minSeverity = Severity.sev4
        if let text = try when.string("min_severity") {
            guard let parsed = Severity(name: text) else { throw when.error("min_severity", "\"\(text)\" is not one of SEV1, SEV2, SEV3, SEV4") }
            minSeverity = parsed
        }
        guard let slo = try root.int("slo_s", in: 1...3600) else { throw root.error("slo_s", "is required: the most a run may take") }
        let minRecovered = try root.double("min_recovered", in: 0...1) ?? 1
        guard let stepReaders = try root.objects("steps"), !stepReaders.isEmpty else { throw root.error("steps", "is required and must not be empty") }
        guard stepReaders.count <= Playbook.maxSteps else { throw root.error("steps", "has \(stepReaders.count) steps; at most \(Playbook.maxSteps)") }
        var steps: [PlaybookStep] = []
        for reader in stepReaders {
            steps.append(try step(reader))
        }
        var names: Set<String> = []
        for (index, step) in steps.enumerated() where !names.insert(step.name).inserted {
            throw stepReaders[index].error("name", "\"\(step.name)\" names an earlier step too")
        }
        return Playbook(
            id: id, title: title, source: source ?? file, causes: causes, minSeverity: minSeverity, slo: .seconds(slo), minRecovered: minRecovered,
            steps: steps)
    }

    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    private static func step(_ reader: ConfigReader) throws(ConfigError) -> PlaybookStep {
        try reader.rejectUnknownKeys(allowed: stepKeys)
        guard let name = try reader.string("name") else { throw reader.error("name", "is required") }
        guard RegistrationRequest.isIdentifier(name, allowUppercase: true), name.utf8.count <= 64 else {
            throw reader.error("name", "\"\(name)\" must be 1–64 characters of letters, digits, '.', '_' or '-'")
        }
        guard let actionText = try reader.string("action") else { throw reader.error("action", "is required") }
        guard let action = PlaybookAction(rawValue: actionText) else {
            throw reader.error("action", "\"\(actionText)\" is not one of " + PlaybookAction.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard let timeout = try reader.int("timeout_s", in: 1...Int(PlaybookStep.maxTimeout.wholeNanoseconds / 1_000_000_000)) else {
            throw reader.error("timeout_s", "is required: how long one attempt may take")
        }
        var tier: AuthorityTier? = nil
        if let text = try reader.string("tier") {
            guard let parsed = AuthorityTier(rawValue: text.uppercased()) else { throw reader.error("tier", "\"\(text)\" is not one of L0, L1, L2") }
            guard parsed >= action.defaultTier else {
                throw reader.error(
                    "tier", "\(parsed.rawValue) is less than \(action.rawValue) needs (\(action.defaultTier.rawValue)): a playbook may ask for more authority, never less")
            }
            tier = parsed
        }
        let minRunning = try reader.double("min_running", in: 0...1)
        if minRunning != nil && action != .verifyRunning { throw reader.error("min_running", "applies only to verify_running") }
        let count = try reader.int("count", in: 1...64)
        if count != nil && action != .freezeLowestPriority { throw reader.error("count", "applies only to freeze_lowest_priority") }
        var target = PlaybookTarget.incident
        if let text = try reader.string("target") {
            guard let parsed = PlaybookTarget(rawValue: text) else { throw reader.error("target", "\"\(text)\" is not one of incident, critical") }
            guard action == .healthCheck || action == .restartAgents else { throw reader.error("target", "applies only to health_check and restart_agents") }
            target = parsed
        }
        return PlaybookStep(
            name: name, action: action, timeout: .seconds(timeout), retries: try reader.int("retries", in: 0...PlaybookStep.maxRetries) ?? 0,
            required: try reader.bool("required") ?? true, tier: tier, minRunning: minRunning, count: count, target: target)
    }

    /// `playbooks.d`: every `*.json` file, in name order, at most `maxFiles`; refused files are
    /// named with their error and the rest load.
    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    public static func loadDirectory(_ directory: String) -> (playbooks: [Playbook], refused: [ConfigError]) {
        // A playbook restarts, freezes and rolls agents back: trusted as a manifest is.
        if let problem = TrustedFile.directoryProblem(directory) {
            return problem.missing ? ([], []) : ([], [ConfigError(file: directory, key: "", line: nil, reason: problem.reason)])
        }
        guard let names = try? FileIO.list(directory) else { return ([], []) }
        var playbooks: [Playbook] = []
        var refused: [ConfigError] = []
        let files = names.sorted().filter { $0.hasSuffix(".json") }
        for (index, fileName) in files.enumerated() {
            let path = directory + "/" + fileName
            guard index < maxFiles else {
                refused.append(ConfigError(file: path, key: "", line: nil, reason: "more than \(maxFiles) playbooks in \(directory): not read"))
                continue
            }
            do {
                let bytes: [UInt8]
                do {
                    bytes = try TrustedFile.read(path: path, limit: maxFileBytes)
                } catch let failure as FileIO.Failure where failure.errno == EFBIG {
                    throw ConfigError(file: path, key: "", line: nil, reason: "larger than \(maxFileBytes >> 10) KiB")
                }
                let playbook = try parse(text: ConfigReader.text(of: bytes, file: path), file: path)
                if let other = playbooks.first(where: { $0.id == playbook.id }) {
                    refused.append(ConfigError(file: path, key: "id", line: nil, reason: "\"\(playbook.id)\" is already used by \(other.source)"))
                    continue
                }
                playbooks.append(playbook)
            } catch let error as ConfigError {
                refused.append(error)
            } catch let untrusted as TrustedFile.Untrusted {
                refused.append(ConfigError(file: path, key: "", line: nil, reason: untrusted.description))
            } catch {
                refused.append(ConfigError(file: path, key: "", line: nil, reason: "cannot read: \(error)"))
            }
        }
        return (playbooks, refused)
    }

    /// Seed 002's two playbooks, its resource siege and snapshot corruption, and seed 003's
    /// mass failure, in the order they are tried.
    public static let builtInTexts: [(id: String, text: String)] = [
        (
            "emergency_recovery",
            """
            {
              "id": "emergency_recovery",
              "title": "Seed 002's emergency procedure: critical agents down together",
              "when": { "causes": ["critical_agents_down"], "min_severity": "SEV1" },
              "slo_s": 120,
              "min_recovered": 0.67,
              "steps": [
                { "name": "assess", "action": "assess", "timeout_s": 5 },
                { "name": "parallel_restart", "action": "restart_critical", "timeout_s": 10 },
                { "name": "verify_critical", "action": "health_check", "target": "critical", "timeout_s": 10, "retries": 3, "required": false },
                { "name": "verify_incident_agents", "action": "health_check", "timeout_s": 10, "retries": 1, "required": false },
                { "name": "diagnose", "action": "record_diagnostic", "timeout_s": 5 },
                { "name": "root_cause", "action": "analyse_root_cause", "timeout_s": 5 },
                { "name": "verify_node", "action": "verify_running", "timeout_s": 20, "retries": 2, "required": false },
                { "name": "record", "action": "assess", "timeout_s": 5 }
              ]
            }
            """
        ),
        (
            "mass_failure",
            """
            {
              "id": "mass_failure",
              "title": "Seed 003's mass-failure runbook: assess, root cause, go/no-go",
              "when": { "causes": ["mass_failure", "task_failures"], "min_severity": "SEV1" },
              "slo_s": 1800,
              "min_recovered": 0,
              "steps": [
                { "name": "assess", "action": "assess", "timeout_s": 5 },
                { "name": "root_cause", "action": "analyse_root_cause", "timeout_s": 5 },
                { "name": "go_no_go", "action": "rollback_changed", "timeout_s": 30, "required": false },
                { "name": "diagnose", "action": "record_diagnostic", "timeout_s": 5 }
              ]
            }
            """
        ),
        (
            "snapshot_corruption",
            """
            {
              "id": "snapshot_corruption",
              "title": "Seed 002's DIRT02: a snapshot fails verification",
              "when": { "causes": ["integrity:snapshot"], "min_severity": "SEV1" },
              "slo_s": 60,
              "steps": [
                { "name": "quarantine", "action": "quarantine_snapshot", "timeout_s": 10 },
                { "name": "fresh_snapshot", "action": "take_snapshot", "timeout_s": 50 }
              ]
            }
            """
        ),
        (
            "resource_siege",
            """
            {
              "id": "resource_siege",
              "title": "Seed 002's DIRT03: the node under resource siege",
              "when": { "causes": ["ram_over_budget"], "min_severity": "SEV2" },
              "slo_s": 120,
              "min_recovered": 0,
              "steps": [
                { "name": "assess", "action": "assess", "timeout_s": 5 },
                { "name": "shed", "action": "shed_load", "timeout_s": 5 },
                { "name": "freeze", "action": "freeze_lowest_priority", "count": 1, "timeout_s": 5, "required": false },
                { "name": "snapshot", "action": "take_snapshot", "timeout_s": 60, "required": false }
              ]
            }
            """
        ),
        (
            "single_agent_recovery",
            """
            {
              "id": "single_agent_recovery",
              "title": "Seed 002's critical-agent restart: one agent down",
              "when": { "causes": ["agent_down:"], "min_severity": "SEV3" },
              "slo_s": 60,
              "steps": [
                { "name": "restart", "action": "restart_agents", "timeout_s": 5 },
                { "name": "verify", "action": "health_check", "timeout_s": 5, "retries": 3, "required": false },
                { "name": "root_cause", "action": "analyse_root_cause", "timeout_s": 5 },
                { "name": "rollback", "action": "rollback_changed", "timeout_s": 10, "required": false },
                { "name": "verify_after", "action": "health_check", "timeout_s": 10, "retries": 1 },
                { "name": "diagnose", "action": "record_diagnostic", "timeout_s": 5 }
              ]
            }
            """
        ),
    ]

    public static func builtIn() -> [Playbook] {
        builtInTexts.map { entry in
            // A built-in that does not parse is a bug the playbook tests catch.
            (try? parse(text: entry.text, file: "built-in:\(entry.id)", source: "built-in")) ?? Playbook(
                id: entry.id, title: "unreadable built-in", causes: [], slo: .seconds(1), steps: [])
        }
    }
}

/// `GET /v1/playbooks` and `pimesh playbooks`: the playbooks in force, in the order they are
/// tried, and the files refused.
public struct PlaybookListing: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var id: String
        public var title: String
        public var source: String
        public var causes: [String]
        public var minSeverity: String
        public var sloS: Int64
        public var minRecovered: Double
        public var steps: [String]

        init(_ playbook: Playbook) {
            id = playbook.id
            title = playbook.title
            source = playbook.source
            causes = playbook.causes
            minSeverity = playbook.minSeverity.description
            sloS = playbook.slo.wholeNanoseconds / 1_000_000_000
            minRecovered = playbook.minRecovered
            steps = playbook.steps.map { step in
                "\(step.name): \(step.action.rawValue) (\(step.tier.rawValue), \(step.timeout.wholeNanoseconds / 1_000_000_000) s"
                    + (step.retries > 0 ? ", \(step.retries) \(step.retries == 1 ? "retry" : "retries")" : "") + (step.required ? "" : ", may fail") + ")"
            }
        }
    }

    public var playbooks: [Entry]
    public var refused: [String]
}
