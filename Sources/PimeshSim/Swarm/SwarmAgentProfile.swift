import PimeshCore

/// How one simulated agent behaves: its class, how late its heartbeats arrive and how much
/// that varies, and how deep its queue runs. Varied on purpose, so that scores differ.
struct SwarmAgentProfile: Sendable, Equatable {
    var agentClass: AgentClass
    var capabilities: [String]
    var baseLatencyMs: Double
    /// Relative jitter: 0.1 means latency moves ±10 % around its base.
    var jitter: Double
    var meanQueueDepth: Double

    static let capabilityPool = ["sense", "infer", "store", "relay", "actuate"]

    /// Mostly CLASS_E_LOCAL, as on a Pi, with a few of the other local-ish classes; one agent
    /// in twenty is slow and one in twenty-five erratic.
    static func make(index: Int, using rng: inout SplitMix64) -> SwarmAgentProfile {
        let classes: [AgentClass] = [.local, .local, .local, .local, .local, .local, .edge, .serverless, .persistent, .gpu]
        let agentClass = classes[index % classes.count]
        var latency = Double.random(in: 0.5...25, using: &rng)
        if index % 20 == 19 { latency = Double.random(in: 120...400, using: &rng) }
        var jitter = Double.random(in: 0.02...0.25, using: &rng)
        if index % 25 == 24 { jitter = Double.random(in: 0.8...1.2, using: &rng) }
        let first = capabilityPool[index % capabilityPool.count]
        let second = capabilityPool[(index / capabilityPool.count + 1) % capabilityPool.count]
        return SwarmAgentProfile(
            agentClass: agentClass, capabilities: first == second ? [first] : [first, second], baseLatencyMs: latency,
            jitter: jitter, meanQueueDepth: Double.random(in: 0...8, using: &rng))
    }

    func latencySample(using rng: inout SplitMix64) -> Double {
        max(0, baseLatencyMs * (1 + jitter * Double.random(in: -1...1, using: &rng)))
    }

    /// Wanders around the mean, one step at a time, as a real backlog does.
    func nextQueueDepth(after current: Int, using rng: inout SplitMix64) -> Int {
        let pull = Double(current) < meanQueueDepth ? 1 : -1
        let step = Int.random(in: -1...1, using: &rng) + (Double.random(in: 0...1, using: &rng) < 0.3 ? pull : 0)
        return max(0, current + step)
    }
}
