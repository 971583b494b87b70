import PimeshCore

/// An agent's health in `GET /v1/agents`: condition (alive, suspected, hung, looping, exited,
/// frozen, unknown) with why and since when, phi now, breaker state, canary limit.
public struct AgentHealthView: Codable, Sendable, Equatable {
    public var condition: String
    public var reason: String
    public var sinceMsAgo: Int64?
    public var phi: Double
    public var breaker: String
    /// Tasks the agent may hold at once while it ramps up after a restart; nil is no limit.
    public var canaryLimit: Int?

    public init(condition: String, reason: String, sinceMsAgo: Int64?, phi: Double, breaker: String, canaryLimit: Int?) {
        self.condition = condition
        self.reason = reason
        self.sinceMsAgo = sinceMsAgo
        self.phi = phi
        self.breaker = breaker
        self.canaryLimit = canaryLimit
    }
}

/// A manifest agent as the supervisor runs it.
public struct SupervisionView: Codable, Sendable, Equatable {
    public var mode: String
    public var manifest: String
    public var pid: Int32?
    public var restarts: Int
    public var lastExit: String?
    /// When the next start is due (backoff), in ms from now.
    public var restartInMs: Int64?
    public var frozen: Bool
    /// An action that waits for an operator's `pimesh heal` (authority tier or degradation).
    public var awaitingOperator: String?
    public var memoryBytes: UInt64?
    public var memoryLimitBytes: UInt64?
    public var log: String?
    /// The user a supervised agent runs as (its manifest's `user`, else `pimesh-agent`, else the lead's).
    public var user: String?
    /// Its restarts were given up: it stays down until `pimesh heal`.
    public var failed: Bool
    /// Stopped by an operator (`pimesh agent stop`): down until `pimesh agent start`.
    public var stopped: Bool

    public init(
        mode: String, manifest: String, pid: Int32?, restarts: Int, lastExit: String?, restartInMs: Int64?, frozen: Bool,
        awaitingOperator: String?, memoryBytes: UInt64?, memoryLimitBytes: UInt64?, log: String?, user: String? = nil, failed: Bool = false,
        stopped: Bool = false
    ) {
        self.failed = failed
        self.stopped = stopped
        self.mode = mode
        self.manifest = manifest
        self.pid = pid
        self.restarts = restarts
        self.lastExit = lastExit
        self.restartInMs = restartInMs
        self.frozen = frozen
        self.awaitingOperator = awaitingOperator
        self.memoryBytes = memoryBytes
        self.memoryLimitBytes = memoryLimitBytes
        self.log = log
        self.user = user
    }
}

/// One entry of the lead's health event log (`GET /v1/events`): detection, exits, restarts,
/// heals, breakers, degradation, orphan migration, work stealing.
public struct HealthEvent: Codable, Sendable, Equatable {
    public var sequence: UInt64
    /// Wall-clock time of the event itself (the heartbeat, the exit), in ms since the epoch.
    public var atMs: Int64
    public var kind: String
    public var agent: String?
    public var detail: String
    /// The authority tier of an action, and whether it ran or waits for an operator.
    public var tier: String?
    /// How many identical events this one stands for (nil: one), the last of them at `lastAtMs`:
    /// a storm of the same event takes one place in the ring, not all of it.
    public var count: Int?
    public var lastAtMs: Int64?

    public init(sequence: UInt64, atMs: Int64, kind: String, agent: String?, detail: String, tier: String? = nil) {
        self.sequence = sequence
        self.atMs = atMs
        self.kind = kind
        self.agent = agent
        self.detail = detail
        self.tier = tier
    }
}

public struct HealthEventList: Codable, Sendable {
    public var events: [HealthEvent]
    /// Pass as `since` to get only newer events.
    public var next: UInt64

    public init(events: [HealthEvent], next: UInt64) {
        self.events = events
        self.next = next
    }
}

/// `health` in `GET /v1/status`.
public struct HealthReport: Codable, Sendable, Equatable {
    public var level: String
    public var restrictions: [String]
    /// Agents by condition.
    public var conditions: [String: Int]
    public var supervised: Int
    public var attached: Int
    public var restarts: Int
    public var refusedManifests: [String]
    public var awaitingOperator: [String]
    public var openGroupBreakers: [String]
    public var agentsMemoryBytes: UInt64?
    public var ramBudgetBytes: UInt64?
    public var cgroups: String
    /// What an operator should fix though nothing fails yet (agents running as root).
    public var warnings: [String]
    /// Supervised agents whose restarts were given up (`restart_given_up`): down until `pimesh heal`.
    public var failed: [String] = []
    /// Seed 000's authority tiers: how long their healing steps took from due to done.
    public var tiers: [TierReport] = []

    public struct TierReport: Codable, Sendable, Equatable {
        public var tier: String
        public var slaMs: Int
        public var steps: Int
        public var withinSla: Int
        public var p95Ms: Double?
        public var worstMs: Double?

        public init(_ summary: TierResponseTimes.Summary) {
            tier = summary.tier.rawValue
            slaMs = summary.tier.slaMs
            steps = summary.steps
            withinSla = summary.withinSLA
            p95Ms = summary.p95Ms.map(ImpedanceView.round)
            worstMs = summary.worstMs.map(ImpedanceView.round)
        }
    }

    public init(
        level: String, restrictions: [String], conditions: [String: Int], supervised: Int, attached: Int, restarts: Int,
        refusedManifests: [String], awaitingOperator: [String], openGroupBreakers: [String], agentsMemoryBytes: UInt64?,
        ramBudgetBytes: UInt64?, cgroups: String, warnings: [String] = [], failed: [String] = []
    ) {
        self.failed = failed
        self.level = level
        self.restrictions = restrictions
        self.conditions = conditions
        self.supervised = supervised
        self.attached = attached
        self.restarts = restarts
        self.refusedManifests = refusedManifests
        self.awaitingOperator = awaitingOperator
        self.openGroupBreakers = openGroupBreakers
        self.agentsMemoryBytes = agentsMemoryBytes
        self.ramBudgetBytes = ramBudgetBytes
        self.cgroups = cgroups
        self.warnings = warnings
    }
}
