import PimeshCore

/// `GET /v1/status` and `pimesh status --json`. Scripts may rely on these keys (issue 4):
/// agents.total/ready/transit/conflict, node.score, heartbeats.accepted, heartbeats.dropped,
/// rss_bytes and pss_bytes.
public struct StatusReport: Codable, Sendable {
    public var version: String
    public var pid: Int32
    public var uptimeS: Double
    public var agents: Agents
    public var node: Node
    public var heartbeats: Heartbeats
    public var rssBytes: UInt64
    public var pssBytes: UInt64
    public var privateAnonymousBytes: UInt64
    public var store: Store
    /// Seed 001 §11.1 KPIs over the seed's window for each (and over hour, day and month), each beside its target.
    public var kpis: [KPI] = []
    public var tasks = Tasks()
    /// Failure detection, supervision and degradation (issue 6).
    public var health: HealthReport?
    /// The audit log's size and pruning (docs/audit.md).
    public var audit: AuditStatus?
    /// Open incidents, worst first (docs/incidents.md).
    public var incidents: IncidentSummary?

    public struct AuditStatus: Codable, Sendable, Equatable {
        public var lastSeq: Int64
        public var rows: Int64
        /// Bytes of the rows' texts at the last retention check (hourly), not counting SQLite pages.
        public var bytesAtLastCheck: Int64
        public var prunedThroughSeq: Int64?
        /// The highest row a snapshot confirmed upstream covers; nil: nothing went upstream, so
        /// a node with an upstream prunes nothing yet.
        public var upstreamSeq: Int64?
        public var newestHeadSeq: Int64?
        /// True when the node has no upstream (`upload.target` none): rows past the retention
        /// are then pruned by age alone, through the node's own newest head. Optional: a lead
        /// older than the CLI does not send it.
        public var prunedByAgeAlone: Bool?

        public init(
            lastSeq: Int64, rows: Int64, bytesAtLastCheck: Int64, prunedThroughSeq: Int64?, upstreamSeq: Int64?, newestHeadSeq: Int64?,
            prunedByAgeAlone: Bool?
        ) {
            self.lastSeq = lastSeq
            self.rows = rows
            self.bytesAtLastCheck = bytesAtLastCheck
            self.prunedThroughSeq = prunedThroughSeq
            self.upstreamSeq = upstreamSeq
            self.newestHeadSeq = newestHeadSeq
            self.prunedByAgeAlone = prunedByAgeAlone
        }
    }

    public struct Agents: Codable, Sendable {
        public var total: Int
        public var ready: Int
        public var transit: Int
        public var conflict: Int
        public var readyRatio: Double
        public var degraded: Int
        public var unstable: Int
        public var meanScore: Double?
        public var p95Score: Int?
        /// Names of agents held out of routing after a conflict, until released.
        public var quarantined: [String] = []
        /// `agents.max_registered`: registrations past it get 507 (nil from an older lead).
        public var maxRegistered: Int?

        public init(_ summary: ClusterSummary) {
            total = summary.total
            ready = summary.ready
            transit = summary.transit
            conflict = summary.conflict
            readyRatio = ImpedanceView.round(summary.readyRatio)
            degraded = summary.degraded
            unstable = summary.unstable
            meanScore = summary.meanScore.map(ImpedanceView.round)
            p95Score = summary.p95Score
        }
    }

    public struct Node: Codable, Sendable {
        public var score: Int
        public var factors: Factors
        public var readings: NodeReadings

        public struct Factors: Codable, Sendable {
            public var cpu: Double
            public var memory: Double
            public var io: Double
            public var thermal: Double
            public var headroom: Double
            public var tasks: Double
            public var storage: Double
            public var power: Double
        }

        /// DESIGN.md §5: the lead's own writes against `store.write_budget_mb_per_day`.
        public struct Writes: Codable, Sendable {
            public var budgetBytesPerDay: UInt64
            public var lastDayBytes: UInt64
            /// The last two hours' pace, as a day.
            public var projectedPerDayBytes: UInt64
            /// Checkpoint intervals are this many times longer while the lead writes ahead.
            public var checkpointStretch: Double
        }

        public var writes: Writes?

        public init(impedance: NodeImpedance, readings: NodeReadings, writeBudget: WriteBudget? = nil, at now: Instant? = nil) {
            score = impedance.score
            factors = Factors(
                cpu: ImpedanceView.round(impedance.cpu), memory: ImpedanceView.round(impedance.memory),
                io: ImpedanceView.round(impedance.io), thermal: ImpedanceView.round(impedance.thermal),
                headroom: ImpedanceView.round(impedance.headroom), tasks: ImpedanceView.round(impedance.tasks),
                storage: ImpedanceView.round(impedance.storage), power: ImpedanceView.round(impedance.power))
            self.readings = readings
            if let writeBudget, let now {
                writes = Writes(
                    budgetBytesPerDay: writeBudget.bytesPerDay, lastDayBytes: writeBudget.usedLastDay(at: now),
                    projectedPerDayBytes: writeBudget.projectedPerDay(at: now),
                    checkpointStretch: ImpedanceView.round(writeBudget.checkpointStretch(at: now)))
            }
        }
    }

    public struct Heartbeats: Codable, Sendable {
        public var intervalMs: Int
        public var accepted: Int
        public var droppedTotal: Int
        /// Every drop reason with its count, zeros included.
        public var dropped: [String: Int]

        public init(intervalMs: Int, counters: HeartbeatCounters) {
            self.intervalMs = intervalMs
            accepted = counters.accepted
            droppedTotal = counters.totalDropped
            dropped = Dictionary(uniqueKeysWithValues: counters.droppedByReason.map { ($0.reason.description, $0.count) })
        }
    }

    public struct KPI: Codable, Sendable, Equatable {
        public var name: String
        /// nil until something was measured.
        public var value: Double?
        public var target: Double
        /// ">=" or "<=".
        public var bound: String
        public var unit: String
        public var samples: Int
        public var met: Bool?
        /// The window `value` covers, the one the seed measures this KPI over: hour, day or month.
        public var window: String
        /// The same KPI over the last hour, day and month.
        public var windows: [Measurement]

        public struct Measurement: Codable, Sendable, Equatable {
            public var window: String
            public var value: Double?
            public var samples: Int
        }

        public init(_ indicator: CoordinationKPIs.Indicator) {
            name = indicator.name
            value = indicator.value.map(ImpedanceView.round)
            target = indicator.target
            bound = indicator.bound.rawValue
            unit = indicator.unit
            samples = indicator.samples
            met = indicator.met
            window = indicator.window.rawValue
            windows = indicator.windows.map { Measurement(window: $0.window.rawValue, value: $0.value.map(ImpedanceView.round), samples: $0.samples) }
        }
    }

    public struct Tasks: Codable, Sendable {
        public var submitted = 0
        public var skipped = 0
        public var queued = 0
        public var assigned = 0
        public var running = 0
        public var succeeded = 0
        public var failed = 0
        public var conflict = 0
        public var cancelled = 0
        /// Results posted for a task that was already finished (refused, not applied).
        public var duplicateResults = 0
        /// Tasks put back in the queue: after a restart, an expired lease or a quarantine.
        public var requeued = 0
        /// Finished tasks in the store, what all stored tasks count against tasks.max_stored_mb (bytes),
        /// and how many finished ones retention deleted since the lead started.
        public var storedFinished: Int?
        public var storedBytes: Int?
        public var pruned: Int?
        /// Work sent as datagrams (docs/protocol.md): to how many agents, and what became of the datagrams.
        public var workDatagrams: WorkDatagrams?
        /// Agents holding a long poll for work right now (each holds a connection in the lead).
        public var longPolls: Int?

        public init() {}
    }

    public struct WorkDatagrams: Codable, Sendable, Equatable {
        /// Agents whose v2 heartbeats gave the lead an address to send work to.
        public var agents = 0
        public var sent = 0
        public var retransmitted = 0
        public var acknowledged = 0
        /// Sent as often as allowed and never acknowledged: their tasks wait for the lease.
        public var givenUp = 0
        /// An ask's or broadcast's, not acknowledged when its gather closed: not sent again.
        /// Optional: a lead from before it is still read.
        public var withdrawn: Int? = 0
        /// Items too large for a datagram, announced with a `fetch` instead.
        public var fetches = 0

        public init() {}
    }

    public struct Store: Codable, Sendable {
        public var path: String
        public var commits: Int
        public var lastCommitMs: Double?
        public var checkpoints: Int
        /// Why commits fail right now (a full disk, say), for how long, and how many batches in
        /// a row; absent while they succeed. Free bytes on the store's file system.
        public var failing: String?
        public var failingForS: Double?
        public var failedBatches: Int?
        public var freeBytes: UInt64?
        /// Writes the lead decided while commits failed, waiting for the store to have room.
        public var waitingWrites: Int?

        public init(path: String, commits: Int, lastCommitMs: Double?, checkpoints: Int) {
            self.path = path
            self.commits = commits
            self.lastCommitMs = lastCommitMs
            self.checkpoints = checkpoints
        }
    }

    public init(
        version: String, pid: Int32, uptimeS: Double, agents: Agents, node: Node, heartbeats: Heartbeats,
        rssBytes: UInt64, pssBytes: UInt64, privateAnonymousBytes: UInt64, store: Store
    ) {
        self.version = version
        self.pid = pid
        self.uptimeS = uptimeS
        self.agents = agents
        self.node = node
        self.heartbeats = heartbeats
        self.rssBytes = rssBytes
        self.pssBytes = pssBytes
        self.privateAnonymousBytes = privateAnonymousBytes
        self.store = store
    }
}
