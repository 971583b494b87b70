import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// One `agents.d/*.json` file: an agent the lead starts and restarts (supervised) or one that
/// something else starts and the lead heals through a command (attached). docs/operations.md
/// lists every key.
public struct AgentManifest: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        case supervised
        case attached
    }

    public var file: String
    public var name: String
    public var mode: Mode
    /// argv[0]: an absolute path, or a name looked up in PATH when the agent starts.
    public var command: String?
    public var args: [String]
    public var environment: [(String, String)]
    public var agentClass: AgentClass
    public var capabilities: [String]
    public var restartPolicy: RestartPolicy
    public var backoff: RestartBackoff.Settings
    public var memoryLimitBytes: UInt64?
    /// Attached agents: argv with `{name}` replaced, e.g. `["podman", "restart", "{name}"]`.
    public var healCommand: [String]
    public var healTimeout: Duration
    /// `user`/`group`/`groups` as written; nil user: the default agent user (ProcessIdentity).
    public var user: String?
    public var group: String?
    public var groups: [String] = []
    /// Resolved when loaded; nil when the manifest names no user.
    var identity: ProcessIdentity?
    /// How long a stop waits after SIGTERM before SIGKILL; nil: `supervision.stop_timeout_s`.
    public var stopTimeout: Duration? = nil
    /// One of the agents the node exists for: down alone it is a SEV2 incident, two of them
    /// down together a SEV1 (docs/incidents.md).
    public var critical = false
    /// Lower runs out first: `freeze_lowest_priority` freezes the lowest (0–9, default 5).
    public var priority = 5
    /// Seed 000 ModelLivenessProbe: an HTTP endpoint of the agent's on loopback.
    public var livenessProbe: Probe?
    /// Seed 000 FlowControlGate: more tasks out with the agent than this and it is held from
    /// new work until it has fewer (nil: no gate).
    public var maxConcurrency: Int?

    public struct Probe: Sendable, Equatable {
        public var address: LocalAddress
        public var path: String
        public var settings: LivenessProbe.Settings
    }
    /// The file's text as parsed: what a rollback puts back (not part of equality).
    public var sourceText = ""

    public static func == (lhs: AgentManifest, rhs: AgentManifest) -> Bool {
        lhs.file == rhs.file && lhs.name == rhs.name && lhs.mode == rhs.mode && lhs.command == rhs.command && lhs.args == rhs.args
            && lhs.environment.map { "\($0.0)=\($0.1)" } == rhs.environment.map { "\($0.0)=\($0.1)" }
            && lhs.agentClass == rhs.agentClass && lhs.capabilities == rhs.capabilities && lhs.restartPolicy == rhs.restartPolicy
            && lhs.backoff == rhs.backoff && lhs.memoryLimitBytes == rhs.memoryLimitBytes && lhs.healCommand == rhs.healCommand
            && lhs.healTimeout == rhs.healTimeout && lhs.user == rhs.user && lhs.group == rhs.group && lhs.groups == rhs.groups
            && lhs.stopTimeout == rhs.stopTimeout && lhs.critical == rhs.critical && lhs.priority == rhs.priority
            && lhs.livenessProbe == rhs.livenessProbe && lhs.maxConcurrency == rhs.maxConcurrency
    }

    static let keys: Set<String> = [
        "name", "mode", "command", "args", "env", "class", "capabilities", "restart", "memory_limit_mb", "heal_command",
        "heal_timeout_s", "user", "group", "groups", "stop_timeout_s", "critical", "priority", "liveness_probe", "max_concurrency",
    ]

    /// Parses and checks one manifest; every error names the file, the key and why.
    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    public static func parse(text: String, file: String) throws(ConfigError) -> AgentManifest {
        let root = try ConfigReader(file: file, text: text)
        try root.rejectUnknownKeys(allowed: keys)
        guard let name = try root.string("name") else { throw root.error("name", "is required") }
        if let problem = RegistrationRequest.nameProblem(name) { throw root.error("name", "\"\(name)\" \(problem)") }
        var mode = Mode.supervised
        if let text = try root.string("mode") {
            guard let parsed = Mode(rawValue: text) else {
                throw root.error("mode", "\"\(text)\" is not one of supervised, attached")
            }
            mode = parsed
        }
        let command = try root.string("command")
        if mode == .supervised {
            guard let command else { throw root.error("command", "is required for a supervised agent (the program the lead starts)") }
            if command.hasPrefix("/") {
                guard FileIO.isExecutable(command) else {
                    throw root.error("command", "\(command) does not exist or is not executable")
                }
            } else if command.contains("/") {
                throw root.error("command", "\"\(command)\" must be an absolute path or a program name found in PATH")
            }
        }
        let args = try root.strings("args", maxCount: 256) ?? []
        var environment: [(String, String)] = []
        if let env = try root.section("env") {
            for key in env.object.keys.sorted() {
                guard RegistrationRequest.isIdentifier(key, allowUppercase: true), !key.contains("-"), !key.contains(".") else {
                    throw env.error(key, "is not a valid environment variable name")
                }
                guard !key.hasPrefix("PIMESH_") else {
                    throw env.error(key, "PIMESH_* variables are set by the lead (the agent's identity)")
                }
                guard let value = try env.string(key, nonEmpty: false) else { continue }
                environment.append((key, value))
            }
        }
        if mode == .supervised, let command, !command.contains("/") {
            // Found now or refused now: a program that is missing would only fail at each start.
            let path = environment.first { $0.0 == "PATH" }?.1 ?? getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
            guard ChildProcess.resolve(command, environment: ["PATH=" + path]) != nil else {
                throw root.error("command", "\(command) is not an executable program in PATH (\(path))")
            }
        }
        var agentClass = AgentClass.local
        if let text = try root.string("class") {
            guard let parsed = AgentClass(name: text) else {
                throw root.error("class", "\"\(text)\" is not one of \(AgentClass.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            agentClass = parsed
        }
        var capabilities: [String] = []
        for (index, capability) in (try root.strings("capabilities", maxCount: RegistrationRequest.maxCapabilities) ?? []).enumerated() {
            guard RegistrationRequest.isIdentifier(capability, allowUppercase: false), capability.utf8.count <= 64 else {
                throw root.error("capabilities", "entry \(index) \"\(capability)\" must be 1–64 characters of a–z, 0–9, '.', '_' or '-'")
            }
            if !capabilities.contains(capability) { capabilities.append(capability) }
        }
        var policy = RestartPolicy.always
        var backoff = RestartBackoff.Settings()
        if let restart = try root.section("restart") {
            try restart.rejectUnknownKeys(allowed: ["policy", "initial_backoff_ms", "max_backoff_ms", "stable_after_s"])
            if let text = try restart.string("policy") {
                guard let parsed = RestartPolicy(rawValue: text) else {
                    throw restart.error("policy", "\"\(text)\" is not one of \(RestartPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                policy = parsed
            }
            if let ms = try restart.int("initial_backoff_ms", in: 1...600_000) { backoff.initial = .milliseconds(ms) }
            if let ms = try restart.int("max_backoff_ms", in: 0...3_600_000) { backoff.maximum = .milliseconds(ms) }
            if let s = try restart.int("stable_after_s", in: 1...86_400) { backoff.stableAfter = .seconds(s) }
            if backoff.maximum < backoff.initial {
                throw restart.error("max_backoff_ms", "must be at least initial_backoff_ms (\(Int(backoff.initial.milliseconds)))")
            }
        }
        var memoryLimit: UInt64?
        if let mb = try root.int("memory_limit_mb", in: 1...1_048_576) { memoryLimit = UInt64(mb) << 20 }
        var healCommand = ["podman", "restart", "{name}"]
        if let heal = try root.strings("heal_command", maxCount: 64) {
            guard let first = heal.first, !first.isEmpty else { throw root.error("heal_command", "must name a program") }
            healCommand = heal
        }
        let healTimeout = Duration.seconds(try root.int("heal_timeout_s", in: 1...3600) ?? 30)
        if mode == .attached, command != nil {
            throw root.error("command", "an attached agent is started by something else; use heal_command for what the lead runs")
        }
        let user = try root.string("user")
        let group = try root.string("group")
        let groups = try root.strings("groups", maxCount: 32) ?? []
        if user == nil, group != nil || !groups.isEmpty {
            throw root.error(group != nil ? "group" : "groups", "needs \"user\": groups belong to the user the agent runs as")
        }
        var identity: ProcessIdentity?
        if let user {
            do {
                identity = try ProcessIdentity.resolve(user: user, group: group, groups: groups)
            } catch let error as ProcessIdentity.LookupError {
                throw root.error(error.key, error.description)
            } catch {
                throw root.error("user", "\(error)")
            }
        }
        var manifest = AgentManifest(
            file: file, name: name, mode: mode, command: command, args: args, environment: environment, agentClass: agentClass,
            capabilities: capabilities, restartPolicy: policy, backoff: backoff, memoryLimitBytes: memoryLimit,
            healCommand: healCommand, healTimeout: healTimeout, user: user, group: group, groups: groups)
        manifest.identity = identity
        if let seconds = try root.int("stop_timeout_s", in: 1...3600) { manifest.stopTimeout = .seconds(seconds) }
        manifest.critical = try root.bool("critical") ?? false
        manifest.priority = try root.int("priority", in: 0...9) ?? 5
        if let probe = try root.section("liveness_probe") {
            try probe.rejectUnknownKeys(allowed: ["url", "every_s", "timeout_ms", "failures", "start_grace_s"])
            guard let url = try probe.string("url") else { throw probe.error("url", "is required: http://127.0.0.1:PORT/PATH") }
            guard let (address, path) = Self.loopbackURL(url) else {
                throw probe.error("url", "\"\(url)\" must be http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH: the lead probes agents on this node only")
            }
            let settings = LivenessProbe.Settings(
                every: .seconds(try probe.int("every_s", in: 1...3600) ?? 10),
                timeout: .milliseconds(try probe.int("timeout_ms", in: 100...60_000) ?? 5000),
                failures: try probe.int("failures", in: 1...10) ?? 1,
                startGrace: .seconds(try probe.int("start_grace_s", in: 0...3600) ?? 30))
            manifest.livenessProbe = Probe(address: address, path: path, settings: settings)
        }
        manifest.maxConcurrency = try root.int("max_concurrency", in: 1...100_000)
        manifest.sourceText = text
        return manifest
    }

    /// `http://127.0.0.1:PORT/PATH` (or localhost): the address and the path, or nil.
    static func loopbackURL(_ url: String) -> (LocalAddress, String)? {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst("http://".count)
        let hostPort = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(hostPort.count)
        let parts = hostPort.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "127.0.0.1" || parts[0] == "localhost", let port = Int(parts[1]), (1...65535).contains(port),
            path.allSatisfy({ $0.isASCII && $0 > " " && $0 != "\u{7F}" })
        else { return nil }
        return (.loopback(host: "127.0.0.1", port: port), path.isEmpty ? "/" : String(path))
    }

    /// Every `*.json` in `directory`, sorted by name. A bad file is refused (with its error) and
    /// the others load. Two files that claim one name: the one `running` names for it (the file
    /// its agent runs from) keeps it, else the first by file name; the others are refused. A
    /// directory that others could write into refuses every file in it.
    @_optimize(size)  // cold: at start and on a reload (the 25 MB budget)
    public static func loadDirectory(_ directory: String, running: [String: String] = [:]) -> (
        manifests: [AgentManifest], refused: [ConfigError]
    ) {
        if let problem = TrustedFile.directoryProblem(directory) {
            return problem.missing ? ([], []) : ([], [ConfigError(file: directory, key: "", line: nil, reason: problem.reason)])
        }
        guard let names = try? FileIO.list(directory) else { return ([], []) }
        var parsed: [AgentManifest] = []
        var refused: [ConfigError] = []
        for fileName in names.sorted() where fileName.hasSuffix(".json") {
            let path = directory + "/" + fileName
            do {
                let bytes = try TrustedFile.read(path: path, limit: 1 << 20)
                parsed.append(try parse(text: ConfigReader.text(of: bytes, file: path), file: path))
            } catch let error as ConfigError {
                refused.append(error)
            } catch let untrusted as TrustedFile.Untrusted {
                refused.append(ConfigError(file: path, key: "", line: nil, reason: untrusted.description))
            } catch {
                refused.append(ConfigError(file: path, key: "", line: nil, reason: "cannot read: \(error)"))
            }
        }
        var manifests: [AgentManifest] = []
        for manifest in parsed {
            let claims = parsed.filter { $0.name == manifest.name }
            let owner = claims.first { $0.file == running[manifest.name] } ?? claims[0]
            if manifest.file == owner.file {
                manifests.append(manifest)
            } else {
                refused.append(ConfigError(file: manifest.file, key: "name", line: nil, reason: "\"\(manifest.name)\" is already used by \(owner.file)"))
            }
        }
        return (manifests, refused)
    }
}

extension ConfigReader {
    /// An array of strings; nil when absent.
    @_optimize(size)  // cold: configuration files, read at start and on a reload (the 25 MB budget)
    func strings(_ key: String, maxCount: Int) throws(ConfigError) -> [String]? {
        guard let value = object[key] else { return nil }
        guard case .array(let items) = value else { throw error(key, "must be an array of strings, not \(value.typeName)") }
        guard items.count <= maxCount else { throw error(key, "may hold at most \(maxCount) entries") }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item else { throw error(key, "entry \(index) must be a string, not \(item.typeName)") }
            try refuseNUL(text, key: key, entry: index)
            result.append(text)
        }
        return result
    }
}

/// A directory of manifests, parsed again only when one of its `*.json` files changed (added,
/// removed, replaced, written: name, inode, size, mtime and ctime). The health monitor looks
/// for attached agents' manifests every 2 s; parsing the whole agents.d each time (JSON, and
/// each `user` through NSS) cost a Pi with 100 manifests 50 parses a second and kept that code
/// resident (docs/benchmarks.md).
final class ManifestDirectoryCache: Sendable {
    struct FileSignature: Equatable {
        var name: String
        var inode: UInt64
        var size: Int64
        var modified: Int64
        var changed: Int64
    }

    private let directory: String
    private let last = Mutex<(signature: [FileSignature], loaded: (manifests: [AgentManifest], refused: [ConfigError]))?>(nil)

    init(directory: String) {
        self.directory = directory
    }

    static func signature(of directory: String) -> [FileSignature] {
        // The directory's own ctime: a chmod or chown of it changes whether its files are trusted.
        var own = stat()
        let directorySignature = stat(directory, &own) == 0
            ? FileSignature(name: ".", inode: UInt64(own.st_ino), size: 0, modified: 0,
                changed: Int64(own.st_ctim.tv_sec) * 1_000_000_000 + Int64(own.st_ctim.tv_nsec))
            : FileSignature(name: ".", inode: 0, size: -1, modified: 0, changed: 0)
        guard let names = try? FileIO.list(directory) else { return [directorySignature] }
        return [directorySignature] + names.sorted().filter { $0.hasSuffix(".json") }.map { name in
            var info = stat()
            guard stat(directory + "/" + name, &info) == 0 else { return FileSignature(name: name, inode: 0, size: -1, modified: 0, changed: 0) }
            return FileSignature(
                name: name, inode: UInt64(info.st_ino), size: Int64(info.st_size),
                modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                changed: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))
        }
    }

    /// What `AgentManifest.loadDirectory` returns, from the last parse while no file changed.
    func load() -> (manifests: [AgentManifest], refused: [ConfigError]) {
        let signature = Self.signature(of: directory)
        if let last = last.withLock({ $0 }), last.signature == signature { return last.loaded }
        let loaded = AgentManifest.loadDirectory(directory)
        last.withLock { $0 = (signature, loaded) }
        return loaded
    }
}
