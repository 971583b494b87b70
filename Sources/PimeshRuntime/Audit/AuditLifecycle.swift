import Crypto
import Glibc
import Logging
import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem
import ServiceLifecycle
import Synchronization

/// The lead's own start and stop in the audit log, and what each agent is started with.
struct AuditLifecycle: Service {
    let audit: AuditLog
    let retainDays: Int
    /// `upload.target` is none: no head will ever be confirmed upstream, so retention prunes
    /// through the node's own heads rather than never.
    let hasUpstream: Bool
    let logger: Logger
    private let retentionClock = RetentionClock()
    /// Retention is judged this often (and once at start); rows live days, not minutes.
    static let pruneEvery = Duration.seconds(3600)
    /// What the audit pace held back is said within about a minute (AuditPace.summaryEvery).
    static let paceFlushEvery = Duration.seconds(60)

    /// Sits right after the store writer in the service group, so that on shutdown it runs
    /// before the writer's final commit.
    func run() async throws {
        pruneIfDue()
        let ticksPerPrune = Int(Self.pruneEvery / Self.paceFlushEvery)
        let ticks = Atomic<Int>(0)
        await repeatUntilGracefulShutdown(every: Self.paceFlushEvery) {
            self.audit.flushPaced()
            if ticks.add(1, ordering: .relaxed).newValue % ticksPerPrune == 0 { self.pruneIfDue() }
        }
        audit.flushPaced(now: true)
        audit.record(AuditEntry(actor: "lead", kind: "lead_stopped", subject: audit.nodeKey.nodeID, body: AuditBody.canonical(["pid": "\(getpid())"])))
    }

    @_optimize(size)  // cold: hourly (the 25 MB budget)
    private func pruneIfDue() {
        do {
            if let through = try audit.prune(retainMs: Int64(retainDays) * 86_400_000, nowMs: retentionClock.nowMs(), upstreamOnly: hasUpstream) {
                logger.notice("audit log pruned", metadata: ["through_seq": "\(through)"])
            }
        } catch {
            logger.error("audit log not pruned", metadata: ["error": "\(error)"])
        }
    }

    /// How far the wall clock stepped since the last row a lead wrote, on this boot; nil when
    /// it did not, on another boot, or before the first row.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func clockStepSinceLastLead(_ audit: AuditLog, store: AuditStore) -> Int64? {
        guard audit.tip.seq > 0, let last = try? store.record(seq: audit.tip.seq) else { return nil }
        return ClockStepDetector.stepSince(
            wallMs: last.wallMs, monoMs: last.monoMs, bootID: last.bootID, nowWallMs: Clock.wallMilliseconds(),
            nowMonoMs: Clock.monotonicNow().nanoseconds / 1_000_000, nowBootID: SystemClockStatus.bootID())
    }

    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func started(_ audit: AuditLog, configFile: String?, configBytes: [UInt8]?) {
        let digest = configBytes.map { Hex.encode(Array(SHA256.hash(data: $0))) } ?? "defaults"
        audit.record(
            AuditEntry(
                actor: "lead", kind: "lead_started", subject: audit.nodeKey.nodeID,
                body: AuditBody.canonical([
                    ("version", PimeshVersion.current), ("pid", "\(getpid())"), ("config", configFile ?? "none"),
                    ("config_sha256", digest),
                ])))
    }

    /// A restore happened while no lead ran (`pimesh snapshot restore` marks the database); the
    /// row names who restored what, and the mark goes in the same commit.
    @_optimize(size)  // cold: once at start (the 25 MB budget)
    static func restored(_ audit: AuditLog, store: AuditStore) throws {
        guard let marker = try store.pendingRestore() else { return }
        let parsed = AuditBody.parse(marker)
        let body = parsed == nil ? AuditBody.canonical([("unreadable_mark", marker)]) : marker
        let fields = Dictionary(parsed ?? [], uniquingKeysWith: { (first: String, _: String) in first })
        let actor = fields["rollback_of"] != nil ? "lead" : fields["restored_by_uid"].map { "operator (uid \($0))" } ?? "operator"
        audit.record(
            AuditEntry(actor: actor, kind: "snapshot_restored", subject: fields["snapshot_sequence"] ?? "", body: body),
            alongside: { try AuditStore.clearPendingRestore(in: $0) })
    }

    /// What an agent runs as, for the audit: its command, arguments and the names (not the
    /// values: they may hold secrets) of its environment, hashed.
    @_optimize(size)  // cold: at start and on a reload (the 25 MB budget)
    static func auditDigest(of manifest: AgentManifest) -> String {
        var text = (manifest.command ?? "") + "\n"
        for arg in manifest.args { text += "\(arg.utf8.count):\(arg)\n" }
        text += manifest.environment.map(\.0).sorted().joined(separator: ",")
        return Hex.encode(Array(SHA256.hash(data: Array(text.utf8))))
    }

    static func manifestRemoved(_ audit: AuditLog, name: String) {
        audit.record(AuditEntry(actor: "lead", kind: "manifest", subject: name, body: AuditBody.canonical(["change": "removed"])))
    }

    static func manifest(_ audit: AuditLog, _ manifest: AgentManifest, change: String) {
        audit.record(
            AuditEntry(
                actor: "lead", kind: "manifest", subject: manifest.name,
                body: AuditBody.canonical([
                    ("change", change), ("file", manifest.file), ("mode", manifest.mode.rawValue),
                    ("launch_sha256", auditDigest(of: manifest)),
                ])))
    }
}
