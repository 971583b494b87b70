/// The RAM budget for all agents together (DESIGN.md §5): over it the node degrades and sheds
/// before the kernel's OOM killer picks a victim; an agent over its own limit is restarted.
public struct MemoryBudget: Sendable, Equatable {
    public var budgetBytes: UInt64?

    public init(budgetBytes: UInt64?) {
        self.budgetBytes = budgetBytes
    }

    public struct Usage: Sendable, Equatable {
        public var name: String
        public var bytes: UInt64
        public var limitBytes: UInt64?

        public init(name: String, bytes: UInt64, limitBytes: UInt64?) {
            self.name = name
            self.bytes = bytes
            self.limitBytes = limitBytes
        }
    }

    public struct Verdict: Sendable, Equatable {
        public var totalBytes: UInt64
        public var overBudget: Bool
        /// Agents above their own limit, largest excess first.
        public var overLimit: [String]
    }

    public func evaluate(_ usages: [Usage]) -> Verdict {
        let total = usages.reduce(UInt64(0)) { $0 + $1.bytes }
        let over = usages.filter { usage in usage.limitBytes.map { usage.bytes > $0 } ?? false }
            .sorted { ($0.bytes - ($0.limitBytes ?? 0)) > ($1.bytes - ($1.limitBytes ?? 0)) }
            .map(\.name)
        return Verdict(totalBytes: total, overBudget: budgetBytes.map { total > $0 } ?? false, overLimit: over)
    }
}
