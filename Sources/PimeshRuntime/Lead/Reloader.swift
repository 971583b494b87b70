import Logging
import PimeshAgent
import PimeshServer
import PimeshSystem
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `pimesh reload` and SIGHUP (the unit's ExecReload): `agents.d` is read again and applied
/// agent by agent (Supervisor.reload); the config file is checked, and the keys that changed
/// since the lead started are named, because they take effect only at the next start. A config
/// that no longer parses refuses the whole reload, as `nginx -s reload` does: nothing changes.
final class Reloader: Sendable {
    struct Report: Codable, Sendable, Equatable {
        var agents: Supervisor.ReloadReport
        /// Dotted keys whose value in the config file differs from the running lead's.
        var needsRestart: [String]
        /// playbooks.d files refused (file:line: key: reason); the others are in force.
        var playbooksRefused: [String] = []
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    let configFile: String?
    let supervisor: Supervisor
    let playbooks: PlaybookRunner?
    let audit: AuditLog?
    let logger: Logger
    private let startupKeys: [String: String]
    /// One reload at a time: SIGHUP and `pimesh reload` may cross.
    private let running = Mutex(false)

    /// `startupKeys`: `flattenedKeys(of: configFile)` as the lead read it. Taken ready-made:
    /// a throwing init that has built the Mutex crashes the Swift 6.3 optimizer (release builds).
    init(
        configFile: String?, startupKeys: [String: String], supervisor: Supervisor, playbooks: PlaybookRunner? = nil, audit: AuditLog?,
        logger: Logger
    ) {
        self.playbooks = playbooks
        self.audit = audit
        self.configFile = configFile
        self.startupKeys = startupKeys
        self.supervisor = supervisor
        self.logger = logger
    }

    func reload(by caller: String) async throws -> Report {
        guard running.withLock({ flag in
            defer { flag = true }
            return !flag
        }) else { throw Refused(description: "a reload is already running") }
        let supervisor = supervisor
        do {
            let changed = try changedKeys()
            let agents = try await Blocking.onSupervisionThread { try supervisor.reload() }
            // Playbooks and the audit trail are reloaded under the flag too.
            let report = reported(agents, needsRestart: changed, by: caller)
            running.withLock { $0 = false }
            return report
        } catch {
            running.withLock { $0 = false }
            throw error
        }
    }

    /// The config file's keys whose value differs from the running lead's; none without a file.
    private func changedKeys() throws -> [String] {
        guard let configFile else { return [] }
        let now: [String: String]
        do {
            _ = try ConfigLoader.load(path: configFile, trusted: true)
            now = try Self.flattenedKeys(of: configFile)
        } catch {
            throw Refused(description: "\(error); nothing was reloaded")
        }
        return Set(now.keys).union(startupKeys.keys).filter { now[$0] != startupKeys[$0] }.sorted()
    }

    /// Kept out of the async `reload`, with no `defer` there: Swift 6.3.1 crashed splitting the
    /// one-piece coroutine at -Osize (tried for a smaller binary; releases build at -O).
    @_optimize(size)  // cold: an operator's reload (the 25 MB budget)
    private func reported(_ agents: Supervisor.ReloadReport, needsRestart changed: [String], by caller: String) -> Report {
        var report = Report(agents: agents, needsRestart: changed)
        report.playbooksRefused = playbooks?.reload().map(\.description) ?? []
        if let audit {
            let manifests = supervisor.loadedManifests()
            for (names, change) in [(agents.started, "added"), (agents.restarted, "changed"), (agents.updated, "changed")] {
                for name in names { if let manifest = manifests[name] { AuditLifecycle.manifest(audit, manifest, change: change) } }
            }
            for name in agents.stopped { AuditLifecycle.manifestRemoved(audit, name: name) }
        }
        logger.notice(
            "reloaded",
            metadata: [
                "by": "\(caller)", "started": "\(agents.started.joined(separator: ","))", "restarted": "\(agents.restarted.joined(separator: ","))",
                "stopped": "\(agents.stopped.joined(separator: ","))", "updated": "\(agents.updated.joined(separator: ","))",
                "unchanged": "\(agents.unchanged)", "refused": "\(agents.refused.count)",
                "needs_restart": "\(changed.joined(separator: ","))",
            ])
        return report
    }

    /// Every leaf of the config file by its dotted key (`api.port`), its value as text.
    static func flattenedKeys(of file: String) throws -> [String: String] {
        let value = try JSONValue.parse(try FileIO.read(path: file, limit: 1 << 20))
        var keys: [String: String] = [:]
        func walk(_ value: JSONValue, _ path: String) {
            if case .object(let members) = value {
                for (key, member) in members { walk(member, path.isEmpty ? key : path + "." + key) }
            } else {
                keys[path] = "\(value)"
            }
        }
        walk(value, "")
        return keys
    }
}

/// SIGHUP reloads instead of killing the lead (its default action), as daemons do.
struct ReloadOnHangup: Service {
    let reloader: Reloader
    let hangups: UnixSignalsSequence

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            for await _ in hangups {
                do {
                    // Whoever sent the signal is not known: the row says how it came.
                    if let audit = reloader.audit {
                        _ = try await audit.audited(actor: "operator (SIGHUP)", kind: "reload", subject: "node") {
                            try await reloader.reload(by: "SIGHUP")
                        }
                    } else {
                        _ = try await reloader.reload(by: "SIGHUP")
                    }
                } catch {
                    reloader.logger.error("reload refused", metadata: ["by": "SIGHUP", "error": "\(error)"])
                }
            }
        }
    }
}
