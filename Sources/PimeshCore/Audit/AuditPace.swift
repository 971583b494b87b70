/// The pace of the rows the lead writes to the audit log by itself (health events, incident
/// timelines), so that agents cannot fill the SD card through it: one that flapped (alive,
/// suspected, alive …) wrote about 5 rows a second, 140 MB a day kept for 90 days, and twenty of
/// them 1.3 GB a day. Each subject (an agent, an incident, the node) may write `perSubjectBurst`
/// rows at once and `perSubjectPerMinute` after that; all of them together `totalBurst` and
/// `totalPerMinute`. What does not fit is counted, and at most once a minute the lead writes one
/// `audit.rows_coalesced` row with how many rows about which subjects it held back: a gap is
/// never silent. Operators' actions are never paced.
public struct AuditPace: Sendable {
    public struct Settings: Sendable, Equatable {
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
    private var buckets: [String: (bucket: TokenBucket, lastAt: Instant)] = [:]
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
    public mutating func admit(subject: String, at now: Instant) -> Bool {
        let perSubject = Double(settings.perSubjectPerMinute) / 60
        if buckets[subject] == nil, buckets.count >= settings.maxSubjects {
            // A bucket that has filled up again since its last row is a fresh one: forget it.
            let refilled = Duration.milliseconds(Int64(Double(settings.perSubjectBurst) / perSubject * 1000))
            buckets = buckets.filter { now - $0.value.lastAt < refilled }
        }
        var admitted = true
        if buckets[subject] != nil || buckets.count < settings.maxSubjects {
            var entry = buckets[subject] ?? (TokenBucket(ratePerSecond: perSubject, burst: Double(settings.perSubjectBurst)), now)
            admitted = entry.bucket.take(at: now) == nil
            entry.lastAt = now
            buckets[subject] = entry
        }
        // Past `maxSubjects` busy subjects, a new one is paced by the total alone.
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
    public mutating func summary(at instant: Instant, now: Bool = false) -> Summary? {
        guard let first = firstHeldBackAt, now || instant - first >= settings.summaryEvery else { return nil }
        let top = heldBack.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(settings.summaryNames)
        let summary = Summary(
            rows: heldBack.values.reduce(heldBackUnnamed, +), subjects: heldBack.count + (heldBackUnnamed > 0 ? 1 : 0),
            top: top.map { Subject(subject: $0.key, rows: $0.value) })
        heldBack = [:]
        heldBackUnnamed = 0
        firstHeldBackAt = nil
        return summary
    }
}
