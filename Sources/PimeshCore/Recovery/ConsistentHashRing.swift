/// Seed 000 "OrphanedTaskMigrator": the tasks of a dead agent are spread over the live agents
/// with the capability through a consistent-hash ring, so that each task lands on the same agent
/// however often the migration is replayed, and a change of one member moves only its share.
public struct ConsistentHashRing: Sendable {
    public let members: [String]
    private var points: [(hash: UInt64, member: Int)] = []

    /// `virtualNodes` points per member smooth the shares (64 keeps each within ~±20 %).
    public init(members: [String], virtualNodes: Int = 64) {
        self.members = members
        for (index, member) in members.enumerated() {
            for replica in 0..<virtualNodes {
                points.append((Self.hash(member + "#" + String(replica)), index))
            }
        }
        points.sort { ($0.hash, $0.member) < ($1.hash, $1.member) }
    }

    /// The member that owns `key`; nil for an empty ring.
    public func owner(of key: String) -> String? {
        guard !points.isEmpty else { return nil }
        let target = Self.hash(key)
        var low = 0
        var high = points.count
        while low < high {
            let middle = (low + high) / 2
            if points[middle].hash < target { low = middle + 1 } else { high = middle }
        }
        return members[points[low == points.count ? 0 : low].member]
    }

    /// FNV-1a over the UTF-8 bytes, finished with the splitmix64 mixer so that similar names
    /// land far apart. Stable across runs and machines (unlike `Hasher`).
    public static func hash(_ text: String) -> UInt64 {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
        value ^= value >> 30
        value = value &* 0xbf58_476d_1ce4_e5b9
        value ^= value >> 27
        value = value &* 0x94d0_49bb_1331_11eb
        value ^= value >> 31
        return value
    }
}
