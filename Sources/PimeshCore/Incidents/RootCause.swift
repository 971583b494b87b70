/// Seed 003's root-cause analysis of a mass failure, made concrete (docs/incidents.md): failure
/// onsets within `clusterGap` of each other form a cluster; candidate causes are tested in a
/// fixed order and the first with evidence for at least half of the cluster wins, with a
/// confidence equal to the share of the cluster it explains.
public enum RootCause {
    public static let clusterGap = Duration.seconds(10)
    public static let resourceLookback = Duration.seconds(60)
    public static let changeLookback = Duration.seconds(600)
    /// The share of a cluster a candidate must explain to be its cause.
    public static let minimumShare = 0.5
    /// Fewer agents silent at once than this are their own fault, not the lead's.
    public static let minimumSilentForLead = 3

    /// When an agent started failing: its first exit, silence or failed task.
    public struct Onset: Sendable, Equatable {
        public var agent: String
        public var capabilities: [String]
        public var at: Instant
        /// How it failed: `exit 1`, `SIGSEGV`, `silent`, or the task's error text.
        public var signature: String
        /// Gone silent while its process still ran (the lead may not be hearing it).
        public var silentWhileRunning: Bool

        public init(agent: String, capabilities: [String], at: Instant, signature: String, silentWhileRunning: Bool = false) {
            self.agent = agent
            self.capabilities = capabilities
            self.at = at
            self.signature = signature
            self.silentWhileRunning = silentWhileRunning
        }
    }

    /// What the node knew around the cluster.
    public struct Evidence: Sendable {
        public var leadStartedAt: Instant?
        public var clockJumpAt: Instant?
        /// Resource alarms: PSI, RAM budget, OOM kills, thermal, disk.
        public var resourceAlarms: [(at: Instant, what: String)] = []
        /// Manifest or binary changes, per agent.
        public var changes: [(agent: String, at: Instant, what: String)] = []
        public var heartbeatInterval = Duration.seconds(1)

        public init() {}
    }

    public enum Category: String, Codable, Sendable, CaseIterable {
        case lead
        case resources
        case change
        case signature
        case capability
        case leader
        case unknown
    }

    public struct Finding: Codable, Sendable, Equatable {
        public var category: Category
        public var summary: String
        /// 0…1: the share of the cluster the cause explains.
        public var confidence: Double
        public var clusterSize: Int
        /// The agents it explains (for a change: the ones that changed, what a rollback reverts).
        public var agents: [String]

        public init(category: Category, summary: String, confidence: Double, clusterSize: Int, agents: [String]) {
            self.category = category
            self.summary = summary
            self.confidence = confidence
            self.clusterSize = clusterSize
            self.agents = agents
        }

        /// `change (confidence 100 %): …`, as the incident's root cause reads.
        public var text: String {
            "\(category.rawValue) (confidence \(Int((confidence * 100).rounded())) %, \(clusterSize) onset(s)): \(summary)"
        }
    }

    /// Onsets in time order, cut where two are more than `clusterGap` apart.
    public static func clusters(_ onsets: [Onset]) -> [[Onset]] {
        var result: [[Onset]] = []
        for onset in onsets.sorted(by: { $0.at < $1.at }) {
            if let last = result.last?.last, onset.at - last.at <= clusterGap {
                result[result.count - 1].append(onset)
            } else {
                result.append([onset])
            }
        }
        return result
    }

    /// The cause of the largest (then newest) cluster.
    public static func analyse(_ onsets: [Onset], evidence: Evidence) -> Finding {
        let largest = clusters(onsets).enumerated().max { ($0.element.count, $0.offset) < ($1.element.count, $1.offset) }?.element ?? []
        return analyseCluster(largest, evidence: evidence)
    }

    @_optimize(size)  // cold: when an incident opens (the 25 MB budget)
    public static func analyseCluster(_ cluster: [Onset], evidence: Evidence) -> Finding {
        let size = cluster.count
        guard let first = cluster.map(\.at).min(), let last = cluster.map(\.at).max() else {
            return Finding(category: .unknown, summary: "no failure onsets to analyse", confidence: 0, clusterSize: 0, agents: [])
        }
        func finding(_ category: Category, _ summary: String, _ explained: [Onset]) -> Finding? {
            let share = Double(explained.count) / Double(size)
            guard share >= minimumShare else { return nil }
            let agents = uniqueSorted(explained.map(\.agent))
            return Finding(category: category, summary: summary, confidence: share, clusterSize: size, agents: agents)
        }
        // 1. The lead itself: agents that went silent just after it started (or after the
        // wall clock jumped) were most likely not heard, not failing.
        let silent = cluster.filter(\.silentWhileRunning)
        for (at, what) in [(evidence.leadStartedAt, "the lead started"), (evidence.clockJumpAt, "the wall clock jumped")] {
            guard let at else { continue }
            let explained = silent.filter { $0.at >= at && $0.at - at <= clusterGap }
            if let found = finding(.lead, "\(what) \(ms(first - at)) ms before the first onset; \(explained.count) agent(s) went silent after it", explained) {
                return found
            }
        }
        // One hung agent is that agent's fault; three or more at once, the lead's hearing.
        if silent.count >= minimumSilentForLead, let found = finding(.lead, "\(silent.count) agent(s) went silent while their processes ran: the lead is not hearing them", silent) {
            return found
        }
        // 2. Node resources in the minute before the first onset.
        let alarms = evidence.resourceAlarms.filter { $0.at <= last && first - $0.at <= resourceLookback }
        if let alarm = alarms.min(by: { $0.at < $1.at }) {
            let explained = cluster.filter { onset in alarms.contains { $0.at <= onset.at } }
            let kinds = uniqueSorted(alarms.map(\.what)).joined(separator: ", ")
            if let found = finding(.resources, "\(kinds) (first \(ms(first - alarm.at)) ms before the first onset)", explained) {
                return found
            }
        }
        // 3. A manifest or binary change in the ten minutes before an agent's onset.
        let changed = cluster.filter { onset in
            evidence.changes.contains { $0.agent == onset.agent && $0.at <= onset.at && onset.at - $0.at <= changeLookback }
        }
        if !changed.isEmpty {
            let names = uniqueSorted(changed.map(\.agent))
            let what = evidence.changes.filter { names.contains($0.agent) }.map { "\($0.agent): \($0.what)" }
            if let found = finding(.change, "changed before failing: " + uniqueSorted(what).joined(separator: "; "), changed) {
                return found
            }
        }
        // 4. A shared exit signature or error text.
        let bySignature = Dictionary(grouping: cluster, by: \.signature)
        if let (signature, members) = bySignature.max(by: { ($0.value.count, $1.key) < ($1.value.count, $0.key) }),
            let found = finding(.signature, "\(members.count) of \(size) failed with \"\(signature)\"" + meaning(signature), members)
        {
            return found
        }
        // 5. A shared capability.
        var byCapability: [String: [Onset]] = [:]
        for onset in cluster {
            for capability in Set(onset.capabilities) { byCapability[capability, default: []].append(onset) }
        }
        if size > 1, let (capability, members) = byCapability.max(by: { ($0.value.count, $1.key) < ($1.value.count, $0.key) }),
            let found = finding(.capability, "\(members.count) of \(size) serve \(capability): look at what \(capability) depends on", members)
        {
            return found
        }
        // 6. A leader: one failure more than a heartbeat ahead of all the others.
        let ordered = cluster.sorted { $0.at < $1.at }
        if ordered.count >= 3, ordered[1].at - ordered[0].at > evidence.heartbeatInterval {
            return Finding(
                category: .leader,
                summary: "\(ordered[0].agent) failed \(ms(ordered[1].at - ordered[0].at)) ms before the others: a cascade from it",
                confidence: minimumShare, clusterSize: size, agents: [ordered[0].agent])
        }
        return Finding(
            category: .unknown, summary: "no candidate explains half of the \(size) onsets: escalate", confidence: 0, clusterSize: size, agents: [])
    }

    private static func meaning(_ signature: String) -> String {
        let pattern = ErrorPattern.classify(signature)
        return pattern == .other ? "" : " (\(pattern.rawValue): usually \(pattern.likelyMeaning))"
    }

    private static func ms(_ duration: Duration) -> Int64 { max(0, duration.wholeNanoseconds / 1_000_000) }

    private static func uniqueSorted(_ names: [String]) -> [String] { Array(Set(names)).sorted() }
}

/// Seed 003's go/no-go at 15 minutes, the part a node can decide: roll back what changed when
/// the change is the cause, when the cause is still unknown after 15 minutes, or when more
/// than half of the capability groups are affected; otherwise go on fixing forward.
public enum GoNoGo {
    public static let decideAfter = Duration.seconds(15 * 60)

    public enum Decision: Sendable, Equatable {
        case rollBack(String)
        case goOn(String)
    }

    public static func decide(finding: RootCause.Finding?, elapsed: Duration, groupsAffected: Int, groupsTotal: Int) -> Decision {
        if let finding, finding.category == .change {
            return .rollBack("the root cause is a change: \(finding.summary)")
        }
        if groupsTotal > 0, groupsAffected * 2 > groupsTotal {
            return .rollBack("\(groupsAffected) of \(groupsTotal) capability groups affected, more than half")
        }
        if (finding == nil || finding?.category == .unknown), elapsed >= decideAfter {
            return .rollBack("no cause identified after \(elapsed.wholeNanoseconds / 60_000_000_000) min")
        }
        return .goOn(finding.map { "cause \($0.category.rawValue): fix forward" } ?? "analysis under way")
    }
}
