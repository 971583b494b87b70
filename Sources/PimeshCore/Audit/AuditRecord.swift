/// One row of the audit log (docs/audit.md). The lead appends, nobody updates: each row names
/// the hash of the row before it (`prevSHA256`), and its own `sha256` covers every other field,
/// so changing, removing, reordering or inserting a row breaks the chain where it happened
/// (Certificate Transparency's hash chain; a cut tail shows only against a signed head).
public struct AuditRecord: Sendable, Equatable, Codable {
    public var seq: Int64
    /// Wall clock, ms since the epoch: what people read. On a Pi without an RTC it may be wrong
    /// until NTP syncs, which `clockSynced` records.
    public var wallMs: Int64
    /// Monotonic clock of this boot, ms: spans between rows of one boot are exact whatever the
    /// wall clock did.
    public var monoMs: Int64
    /// `/proc/sys/kernel/random/boot_id`: which boot `monoMs` belongs to.
    public var bootID: String
    public var clockSynced: Bool
    /// `lead`, `operator (uid 1000)`, `operator (token)`, or an agent's name.
    public var actor: String
    public var kind: String
    /// The agent, task or node acted on.
    public var subject: String
    /// Canonical `key=value` text (`AuditBody`).
    public var body: String
    public var prevSHA256: String
    public var sha256: String

    enum CodingKeys: String, CodingKey {
        case seq, wallMs, monoMs, clockSynced, actor, kind, subject, body, sha256
        case bootID = "bootId"
        case prevSHA256 = "prevSha256"
    }

    public init(
        seq: Int64, wallMs: Int64, monoMs: Int64, bootID: String, clockSynced: Bool, actor: String, kind: String, subject: String,
        body: String, prevSHA256: String, sha256: String
    ) {
        self.seq = seq
        self.wallMs = wallMs
        self.monoMs = monoMs
        self.bootID = bootID
        self.clockSynced = clockSynced
        self.actor = actor
        self.kind = kind
        self.subject = subject
        self.body = body
        self.prevSHA256 = prevSHA256
        self.sha256 = sha256
    }
}

/// What an action or observation says before it is chained: the shell fills in times and boot.
public struct AuditEntry: Sendable, Equatable {
    public var actor: String
    public var kind: String
    public var subject: String
    public var body: String

    public init(actor: String, kind: String, subject: String, body: String) {
        self.actor = actor
        self.kind = kind
        self.subject = subject
        self.body = body
    }
}
