/// A fixed-size ring of the most recent samples (seed 001 §4.1: `RingBuffer(size=100)`).
///
/// An eager ring allocates its storage once, so that adding a sample never allocates and the
/// heartbeat path can feed it. A lazy ring grows as samples come, for figures most agents may
/// never have (task completions): 1,000 agents that never run a task then cost nothing.
///
/// Samples are kept as `Float`: milliseconds and ratios need 7 significant digits, not 16, and
/// the rings are most of what an agent costs the lead (4 rings of 100 per agent: 3.2 KB of
/// doubles for one that runs tasks, 800 bytes for one that only heartbeats).
public struct SampleRing: Sendable {
    public let capacity: Int
    private var storage: [Float]
    private var next = 0
    public private(set) var count = 0

    public init(capacity: Int, lazily: Bool = false) {
        precondition(capacity > 0, "a ring needs room for at least one sample")
        self.capacity = capacity
        self.storage = lazily ? [] : Array(repeating: 0, count: capacity)
    }

    public mutating func add(_ sample: Double) {
        let sample = Float(sample)
        if storage.count < capacity {
            // A lazy ring that fills is given its exact size, not the next power of two.
            if storage.count == storage.capacity, storage.count >= capacity / 2 { storage.reserveCapacity(capacity) }
            storage.append(sample)
        } else {
            storage[next] = sample
        }
        next = (next + 1) % capacity
        count = min(count + 1, capacity)
    }

    private var stored: ArraySlice<Float> {
        count == capacity ? storage[...] : storage[..<count]
    }

    /// The samples in storage order (a copy: for reports and tests, not for the hot path).
    public var samples: [Double] {
        stored.map(Double.init)
    }

    public var mean: Double? {
        guard count > 0 else { return nil }
        return stored.reduce(0) { $0 + Double($1) } / Double(count)
    }

    /// Population standard deviation; nil with fewer than two samples.
    public var standardDeviation: Double? {
        guard count > 1, let mean else { return nil }
        let squares = stored.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) }
        return (squares / Double(count)).squareRoot()
    }

    /// Nearest-rank percentile, `p` in 0…100. Selected, not sorted, in a stack buffer: the
    /// health tick asks for medians of every agent's rings each second (a sort and an array
    /// per call were 2 % of a 1,000-agent lead's CPU).
    public func percentile(_ p: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = Int((min(max(p, 0), 100) / 100 * Double(count)).rounded(.up))
        let wanted = max(rank, 1) - 1
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: count) { buffer in
            _ = buffer.initialize(fromContentsOf: stored.lazy.map(Double.init))
            defer { buffer.deinitialize() }
            return Self.select(wanted, in: buffer)
        }
    }

    /// The element that would stand at `k` were `values` sorted (Hoare's quickselect, middle
    /// pivot); reorders `values`.
    static func select(_ k: Int, in values: UnsafeMutableBufferPointer<Double>) -> Double {
        var low = 0
        var high = values.count - 1
        while low < high {
            let pivot = values[low + (high - low) / 2]
            var i = low
            var j = high
            while i <= j {
                while values[i] < pivot { i += 1 }
                while values[j] > pivot { j -= 1 }
                if i <= j {
                    values.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if k <= j {
                high = j
            } else if k >= i {
                low = i
            } else {
                return values[k]
            }
        }
        return values[k]
    }
}
