/// Seed 001 §4.2 `get_cluster_summary`: what the lead reports about its agents as a whole.
public struct ClusterSummary: Sendable, Equatable {
    public var total = 0
    public var ready = 0
    public var transit = 0
    public var conflict = 0
    public var degraded = 0
    public var unstable = 0
    public var meanScore: Double?
    public var p95Score: Int?

    public var readyRatio: Double { ratio(ready) }
    public var transitRatio: Double { ratio(transit) }
    public var conflictRatio: Double { ratio(conflict) }

    private func ratio(_ count: Int) -> Double {
        total == 0 ? 0 : Double(count) / Double(total)
    }

    public struct Member: Sendable {
        public var state: TrinaryState
        public var impedance: Impedance

        public init(state: TrinaryState, impedance: Impedance) {
            self.state = state
            self.impedance = impedance
        }
    }

    public init() {}

    public init<S: Sequence>(members: S) where S.Element == Member {
        var scores: [Int] = []
        for member in members {
            total += 1
            switch member.state {
            case .ready: ready += 1
            case .transit: transit += 1
            case .conflict: conflict += 1
            }
            if member.impedance.isDegraded { degraded += 1 }
            if member.impedance.isUnstable { unstable += 1 }
            scores.append(member.impedance.score)
        }
        guard !scores.isEmpty else { return }
        meanScore = Double(scores.reduce(0, +)) / Double(scores.count)
        // The seed's method; it extrapolates past the largest score with few agents, and a
        // score is never above 1000.
        p95Score = CoordinationKPIs.seedP95(scores.map(Double.init)).map { min(1000, max(0, Int($0.rounded()))) }
    }
}
