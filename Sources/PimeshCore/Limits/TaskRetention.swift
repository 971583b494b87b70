/// How long finished tasks stay stored, and how much all stored tasks may take (docs/operations.md,
/// "Bounds"). Open tasks are never pruned: when they alone fill the budget, new ones are refused.
public struct TaskRetention: Sendable, Equatable {
    /// A finished task older than this (from its finish) is pruned.
    public var maxAgeMs: Int64
    /// At most this many finished tasks are kept; the oldest go first.
    public var maxFinished: Int
    /// Payload, result and bookkeeping of every stored task together (`storedBytes`).
    public var maxBytes: Int

    /// Pruning for room stops at this share of `maxBytes`, so that a lead at its budget does not
    /// prune again at every submission.
    public static let lowWaterShare = 0.9
    /// What a row costs beyond its texts: columns, index entries, page slack.
    public static let rowOverheadBytes = 256

    public init(maxAgeMs: Int64, maxFinished: Int, maxBytes: Int) {
        self.maxAgeMs = maxAgeMs
        self.maxFinished = maxFinished
        self.maxBytes = maxBytes
    }

    /// What one stored task counts against `maxBytes`: its texts in UTF-8 and a row's overhead.
    public static func storedBytes(textByteCounts: [Int]) -> Int {
        textByteCounts.reduce(rowOverheadBytes, +)
    }

    /// Whether a new task of `bytes` fits beside what is stored now.
    public func admits(bytes: Int, storedBytes: Int) -> Bool {
        storedBytes + bytes <= maxBytes
    }

    /// How many of `oldest` (finished tasks, earliest finish first, in the store's commit order)
    /// to prune: those past the age, those over the count, and, when `makeRoom` or over the
    /// budget, enough to get back under the low-water mark.
    public func prunable(
        oldest: [(finishedAtMs: Int64, bytes: Int)], finishedCount: Int, storedBytes: Int, nowMs: Int64, makeRoom: Bool = false
    ) -> Int {
        let byteTarget = storedBytes > maxBytes || makeRoom ? Int(Double(maxBytes) * Self.lowWaterShare) : storedBytes
        var count = 0
        var bytes = storedBytes
        var finished = finishedCount
        for row in oldest {
            let tooOld = nowMs - row.finishedAtMs > maxAgeMs
            guard tooOld || finished > maxFinished || bytes > byteTarget else { break }
            count += 1
            bytes -= row.bytes
            finished -= 1
        }
        return count
    }
}
