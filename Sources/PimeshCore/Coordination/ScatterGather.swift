/// Seed 001 §3.2 `scatter_gather`: send each agent its message at `target − lead time` so that
/// all arrive at the target together, grouped into 10 ms send buckets; collect answers until
/// the window after the target closes (or the timeout), then judge them with the quorum rule.
public struct ScatterGather: Sendable {
    public struct Settings: Sendable, Equatable {
        public var arrivalWindow: Duration
        public var bucket: Duration
        public var minimumResponseRatio: Double
        public var timeout: Duration
        public var quorum: TrinaryQuorum.Settings

        public init(
            arrivalWindow: Duration = .milliseconds(500), bucket: Duration = .milliseconds(10),
            minimumResponseRatio: Double = 0.95, timeout: Duration = .seconds(5), quorum: TrinaryQuorum.Settings = .init()
        ) {
            self.arrivalWindow = arrivalWindow
            self.bucket = bucket
            self.minimumResponseRatio = minimumResponseRatio
            self.timeout = timeout
            self.quorum = quorum
        }
    }

    public struct Plan: Sendable, Equatable {
        public var startedAt: Instant
        public var targetArrival: Instant
        /// `target + window`: answers after this are stragglers (seed `arrival_deadline`).
        public var arrivalDeadline: Instant
        /// Whole operation cut-off: never later than `start + timeout`.
        public var closesAt: Instant
        /// Send times in order; each holds the indices of the agents sent then.
        public var buckets: [Bucket]
        public var skipped: [(index: Int, reason: SkipReason)]
        /// Per sent agent: when its answer is predicted to arrive.
        public var predictedArrival: [Int: Instant]

        public var sentCount: Int { buckets.reduce(0) { $0 + $1.indices.count } }

        public static func == (lhs: Plan, rhs: Plan) -> Bool {
            lhs.startedAt == rhs.startedAt && lhs.targetArrival == rhs.targetArrival && lhs.buckets == rhs.buckets
                && lhs.skipped.map(\.index) == rhs.skipped.map(\.index) && lhs.predictedArrival == rhs.predictedArrival
        }
    }

    public struct Bucket: Sendable, Equatable {
        public var sendAt: Instant
        public var indices: [Int]
    }

    public let settings: Settings
    public let scheduler: ArrivalScheduler

    public init(settings: Settings = Settings(), scheduler: ArrivalScheduler = ArrivalScheduler()) {
        self.settings = settings
        self.scheduler = scheduler
    }

    /// `leadTimesMs[i]` is agent i's lead time (predicted arrival with its drift buffer).
    @_optimize(size)  // cold: an operator's ask or broadcast (the 25 MB budget)
    public func plan(leadTimesMs: [Double], now: Instant) -> Plan {
        let target = now + settings.arrivalWindow
        let deadline = target + settings.arrivalWindow
        let closes = min(deadline, now + settings.timeout)
        var byBucket: [Int64: [Int]] = [:]
        var skipped: [(index: Int, reason: SkipReason)] = []
        var predicted: [Int: Instant] = [:]
        let bucketNs = max(1, settings.bucket.wholeNanoseconds)
        for (index, lead) in leadTimesMs.enumerated() {
            switch scheduler.decide(targetArrival: target, leadTimeMs: lead, now: now) {
            case .skip(let reason):
                skipped.append((index, reason))
            case .sendNow(let arrival):
                byBucket[0, default: []].append(index)
                predicted[index] = arrival
            case .wait(let until) where until >= closes:
                // Sending after the close would only hold the caller until then for nothing.
                skipped.append((index, .closesBeforeSend(sendInMs: (until - now).milliseconds, closesInMs: (closes - now).milliseconds)))
            case .wait(let until):
                // Rounded down: a send a few ms early arrives early, which the window absorbs.
                let slot = (until - now).wholeNanoseconds / bucketNs
                byBucket[slot, default: []].append(index)
                predicted[index] = (now + .nanoseconds(slot.saturatingMultiply(bucketNs))).advanced(byMilliseconds: lead)
            }
        }
        let buckets = byBucket.keys.sorted().map { slot in
            Bucket(sendAt: now + .nanoseconds(slot * bucketNs), indices: byBucket[slot]!)
        }
        return Plan(
            startedAt: now, targetArrival: target, arrivalDeadline: deadline, closesAt: closes, buckets: buckets,
            skipped: skipped, predictedArrival: predicted)
    }

    /// What came back: READY and CONFLICT answers inside the window, TRANSIT answers, and late ones.
    public struct Tally: Sendable, Equatable {
        public var sent = 0
        public var ready = 0
        public var conflict = 0
        public var transit = 0
        /// Answers after the arrival deadline: noted, not counted (seed: stragglers).
        public var late = 0

        public init(sent: Int = 0, ready: Int = 0, conflict: Int = 0, transit: Int = 0, late: Int = 0) {
            self.sent = sent
            self.ready = ready
            self.conflict = conflict
            self.transit = transit
            self.late = late
        }

        public var answered: Int { ready + conflict + transit }
        /// Sent but no answer in the window: still in transit as far as the quorum knows.
        public var silent: Int { max(0, sent - answered) }
    }

    public struct Outcome: Sendable, Equatable {
        public var responseRatio: Double
        /// Seed §3.2: SUCCESS when READY answers reach the minimum ratio, else PARTIAL.
        public var gatherSucceeded: Bool
        public var quorum: TrinaryQuorum.Result
    }

    public func judge(_ tally: Tally) -> Outcome {
        let ratio = tally.sent == 0 ? 0 : Double(tally.ready) / Double(tally.sent)
        let quorum = TrinaryQuorum(settings: settings.quorum).check(
            ready: tally.ready, conflict: tally.conflict, transit: tally.transit + tally.silent)
        return Outcome(responseRatio: ratio, gatherSucceeded: tally.sent > 0 && ratio >= settings.minimumResponseRatio, quorum: quorum)
    }
}
