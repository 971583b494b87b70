/// Seed 000 "CapacityAwareRebalancer": when the queued work of the agents that share a
/// capability varies by more than 15 % (coefficient of variation), the idlest agent takes half
/// the difference from the busiest. Only work that has not been handed over yet moves.
public struct WorkStealing: Sendable {
    public struct Settings: Sendable, Equatable {
        public var maxVariation: Double
        /// Moves per round, so that one round cannot stampede (seed: "thundering herd").
        public var maxMovesPerRound: Int

        public init(maxVariation: Double = 0.15, maxMovesPerRound: Int = 8) {
            self.maxVariation = maxVariation
            self.maxMovesPerRound = maxMovesPerRound
        }
    }

    public struct Move: Sendable, Equatable {
        public var from: Int
        public var to: Int
        public var count: Int
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Coefficient of variation of the queue lengths: stddev / mean (0 when nothing is queued).
    public static func variation(_ queues: [Int]) -> Double {
        guard queues.count > 1 else { return 0 }
        let mean = Double(queues.reduce(0, +)) / Double(queues.count)
        guard mean > 0 else { return 0 }
        let variance = queues.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(queues.count)
        return variance.squareRoot() / mean
    }

    /// `queues[i]` is what waits for agent i (movable work only). `canReceive[i]` is false for
    /// an agent that may give work but not take it (frozen, failed): its queue is stolen from,
    /// never added to. The moves are computed against the queues as they change.
    public func plan(_ queues: [Int], canReceive: [Bool]? = nil) -> [Move] {
        var queues = queues
        let receivers = queues.indices.filter { canReceive?[$0] ?? true }
        var moves: [Move] = []
        while moves.count < settings.maxMovesPerRound, Self.variation(queues) > settings.maxVariation {
            guard let idlest = receivers.min(by: { queues[$0] < queues[$1] }) else { break }
            // A giver that cannot take work goes first: its queue waits for nothing.
            let stranded = queues.indices.filter { !(canReceive?[$0] ?? true) && queues[$0] > queues[idlest] }
            guard let busiest = (stranded.isEmpty ? Array(queues.indices) : stranded).max(by: { queues[$0] < queues[$1] }),
                busiest != idlest
            else { break }
            // Between live agents half the difference moves, so that one item never ping-pongs;
            // from one that cannot take work, even a last single item moves.
            let difference = queues[busiest] - queues[idlest]
            let count = stranded.isEmpty ? difference / 2 : (difference + 1) / 2
            guard count > 0 else { break }
            queues[busiest] -= count
            queues[idlest] += count
            moves.append(Move(from: busiest, to: idlest, count: count))
        }
        return moves
    }
}
