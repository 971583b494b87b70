/// A fixed-size ring of the most recent samples (seed 001 §4.1: `RingBuffer(size=100)`).
///
/// An eager ring allocates its storage once, so that adding a sample never allocates and the
/// heartbeat path can feed it. A lazy ring grows as samples come, for figures most agents may
/// never have (task completions): 1,000 agents that never run a task then cost nothing.
public struct SampleRing: Sendable {
    public let capacity: Int
    private var storage: [Double]
    private var next = 0
    public private(set) var count = 0

    public init(capacity: Int, lazily: Bool = false) {
        precondition(capacity > 0, "a ring needs room for at least one sample")
        self.capacity = capacity
        self.storage = lazily ? [] : Array(repeating: 0, count: capacity)
    }

    public mutating func add(_ sample: Double) {
        if storage.count < capacity {
            storage.append(sample)
        } else {
            storage[next] = sample
        }
        next = (next + 1) % capacity
        count = min(count + 1, capacity)
    }

    public var samples: ArraySlice<Double> {
        count == capacity ? storage[...] : storage[..<count]
    }

    public var mean: Double? {
        guard count > 0 else { return nil }
        return samples.reduce(0, +) / Double(count)
    }

    /// Population standard deviation; nil with fewer than two samples.
    public var standardDeviation: Double? {
        guard count > 1, let mean else { return nil }
        let squares = samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (squares / Double(count)).squareRoot()
    }

    /// Nearest-rank percentile, `p` in 0…100.
    public func percentile(_ p: Double) -> Double? {
        guard count > 0 else { return nil }
        let sorted = samples.sorted()
        let rank = Int((min(max(p, 0), 100) / 100 * Double(count)).rounded(.up))
        return sorted[max(rank, 1) - 1]
    }
}
