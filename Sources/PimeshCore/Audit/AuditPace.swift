/// The pace of the audit rows that agents drive by their own behaviour, so that they cannot
/// fill the SD card through the log: one that flapped (alive, suspected, alive …) made the lead
/// write about 5 rows a second, 140 MB a day kept for 90 days, and twenty of them 1.3 GB a day.
/// Only what agents drive by heartbeating or not is paced (`paces(kind:)`), as events and as
/// incident timeline entries: their condition changes, and what follows each flap (the level
/// and its alert, group breakers, an incident mitigated and recurring, an action left to an
/// operator and dropped). The lead's own actions, operators' actions and the other node rows
/// never are. Each subject (an agent, an incident, `node`) may write `perSubjectBurst` rows at
/// once and `perSubjectPerMinute` after that; all of them together `totalBurst` and `totalPerMinute`.
/// What does not fit is counted, and at most once a minute the lead writes one
/// `audit.rows_coalesced` row with how many rows about which subjects it held back: a gap is
/// never silent.
public struct AuditPace: Sendable {
    /// An agent's condition change (`alive`, `suspected`, `exited` …), or what a flap drives.
    /// A second probe's twenty flapping agents still wrote 115 MB a day through the latter, and
    /// with 32 capabilities each, 520 MB of `group_breaker` rows.
    public static func paces(kind: String) -> Bool {
        AgentCondition(rawValue: kind) != nil || flapDriven.contains(kind)
    }

    static let flapDriven: Set<String> = [
        "degradation", "alert", "state_preserved", "group_breaker", "mitigated", "recurred", "awaiting_operator", "awaiting_dropped",
    ]

    public struct Settings: Sendable {
        public var perSubjectBurst = 60
        public var perSubjectPerMinute = 6
        public var totalBurst = 1200
        /// 86,400 rows a day at most once the burst is spent: under 30 MB of the SD card.
        public var totalPerMinute = 60
        public var summaryEvery = Duration.seconds(60)
        /// Subjects remembered at once (their buckets, and what was held back of each).
        public var maxSubjects = 4096
        public var summaryNames = 8

        public init() {}
    }

    public struct Subject: Sendable, Equatable {
        public var subject: String
        public var rows: Int

        public init(subject: String, rows: Int) {
            self.subject = subject
            self.rows = rows
        }
    }

    /// What was held back since the last summary: rows, subjects, and those with the most.
    public struct Summary: Sendable, Equatable {
        public var rows: Int
        public var subjects: Int
        public var top: [Subject]
    }

    public let settings: Settings
    private var total: TokenBucket
    private var buckets: [String: TokenBucket] = [:]
    private var heldBack: [String: Int] = [:]
    /// Rows held back about subjects past `maxSubjects` in `heldBack`.
    private var heldBackUnnamed = 0
    private var firstHeldBackAt: Instant?

    public init(settings: Settings = Settings()) {
        self.settings = settings
        total = TokenBucket(ratePerSecond: Double(settings.totalPerMinute) / 60, burst: Double(settings.totalBurst))
    }

    public var rememberedSubjects: Int { buckets.count }

    /// Whether a row about `subject` may be written now; if not, it is counted.
    @_optimize(size)  // only for rows that are rare unless agents flap (the 25 MB budget)
    public mutating func admit(subject: String, at now: Instant) -> Bool {
        // A full table starts over: each subject gets its burst again, and the total still
        // bounds them all.
        if buckets[subject] == nil, buckets.count >= settings.maxSubjects { buckets.removeAll() }
        var bucket = buckets[subject] ?? TokenBucket(ratePerSecond: Double(settings.perSubjectPerMinute) / 60, burst: Double(settings.perSubjectBurst))
        var admitted = bucket.take(at: now) == nil
        buckets[subject] = bucket
        if admitted { admitted = total.take(at: now) == nil }
        if !admitted {
            if heldBack[subject] != nil || heldBack.count < settings.maxSubjects {
                heldBack[subject, default: 0] += 1
            } else {
                heldBackUnnamed += 1
            }
            firstHeldBackAt = firstHeldBackAt ?? now
        }
        return admitted
    }

    /// What was held back, once `summaryEvery` has passed since the first of it (`now`: at
    /// once, when the lead stops); nil when there is nothing to say yet.
    @_optimize(size)  // at most once a minute (the 25 MB budget)
    public mutating func summary(at instant: Instant, now: Bool = false) -> Summary? {
        guard let first = firstHeldBackAt, now || instant - first >= settings.summaryEvery else { return nil }
        // The most held back first, by name among equals: a few of thousands, without sorting them all.
        var top: [Subject] = []
        for (subject, rows) in heldBack {
            let place = top.firstIndex { rows > $0.rows || (rows == $0.rows && subject < $0.subject) } ?? top.count
            if place < settings.summaryNames {
                top.insert(Subject(subject: subject, rows: rows), at: place)
                if top.count > settings.summaryNames { top.removeLast() }
            }
        }
        let summary = Summary(
            rows: heldBack.values.reduce(heldBackUnnamed, +), subjects: heldBack.count + (heldBackUnnamed > 0 ? 1 : 0), top: top)
        heldBack = [:]
        heldBackUnnamed = 0
        firstHeldBackAt = nil
        return summary
    }
}
