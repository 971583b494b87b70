/// Heartbeat protocol v1: one fixed 64-byte datagram, big-endian (docs/protocol.md).
///
///     0   1  version (1)
///     1   1  trinary state, signed: 1 READY, 0 TRANSIT, −1 CONFLICT
///     2   2  reserved, zero
///     4  16  agent id
///     20  8  iteration, strictly increasing per agent
///     28  8  timestamp_ms, Unix epoch milliseconds when the agent sent it
///     36  4  queue_depth
///     40  8  progress counter (work units done; for the hang/loop watchdog)
///     48 16  tag: HMAC-SHA256(agent secret, bytes 0..<48), first 16 bytes
///
/// Fields come from seed 000's AgentHeartbeat schema plus progress, state and the tag.
/// Decoding reads from borrowed bytes and allocates nothing.
public struct HeartbeatDatagram: Equatable, Sendable {
    public static let version: UInt8 = 1
    public static let size = 64
    public static let signedLength = 48
    public static let tagLength = 16

    public var state: TrinaryState
    public var agentID: AgentID
    public var iteration: UInt64
    public var timestampMs: Int64
    public var queueDepth: UInt32
    public var progress: UInt64
    /// The received tag, as two words so that holding it allocates nothing.
    public var tag: (UInt64, UInt64)

    public init(
        state: TrinaryState, agentID: AgentID, iteration: UInt64, timestampMs: Int64,
        queueDepth: UInt32, progress: UInt64, tag: (UInt64, UInt64) = (0, 0)
    ) {
        self.state = state
        self.agentID = agentID
        self.iteration = iteration
        self.timestampMs = timestampMs
        self.queueDepth = queueDepth
        self.progress = progress
        self.tag = tag
    }

    public static func == (lhs: HeartbeatDatagram, rhs: HeartbeatDatagram) -> Bool {
        lhs.state == rhs.state && lhs.agentID == rhs.agentID && lhs.iteration == rhs.iteration
            && lhs.timestampMs == rhs.timestampMs && lhs.queueDepth == rhs.queueDepth
            && lhs.progress == rhs.progress && lhs.tag == rhs.tag
    }

    public enum Decoded: Sendable {
        case heartbeat(HeartbeatDatagram)
        case drop(HeartbeatDropReason)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoded {
        if bytes.count < size { return .drop(.short) }
        if bytes.count > size { return .drop(.long) }
        if bytes[0] != version { return .drop(.unknownVersion) }
        guard bytes[2] == 0, bytes[3] == 0,
            let state = TrinaryState(rawValue: Int8(bitPattern: bytes[1]))
        else { return .drop(.malformed) }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        return .heartbeat(
            HeartbeatDatagram(
                state: state,
                agentID: AgentID(bytes: bytes, offset: 4),
                iteration: u64(20),
                timestampMs: Int64(bitPattern: u64(28)),
                queueDepth: UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 36, as: UInt32.self)),
                progress: u64(40),
                tag: (u64(48), u64(56))
            ))
    }

    /// Writes the signed part (bytes 0..<48) into `bytes`, which must hold at least 48 bytes.
    public func encodeSignedPart(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= Self.signedLength)
        bytes[0] = Self.version
        bytes[1] = UInt8(bitPattern: state.rawValue)
        bytes[2] = 0
        bytes[3] = 0
        agentID.write(to: bytes, offset: 4)
        bytes.storeBytes(of: iteration.bigEndian, toByteOffset: 20, as: UInt64.self)
        bytes.storeBytes(of: UInt64(bitPattern: timestampMs).bigEndian, toByteOffset: 28, as: UInt64.self)
        bytes.storeBytes(of: queueDepth.bigEndian, toByteOffset: 36, as: UInt32.self)
        bytes.storeBytes(of: progress.bigEndian, toByteOffset: 40, as: UInt64.self)
    }

    /// Writes a whole datagram: the signed part, then the first 16 bytes of `fullTag`.
    public func encode<T: Collection>(into bytes: UnsafeMutableRawBufferPointer, tag fullTag: T) where T.Element == UInt8 {
        precondition(bytes.count >= Self.size && fullTag.count >= Self.tagLength)
        encodeSignedPart(into: bytes)
        for (i, b) in fullTag.prefix(Self.tagLength).enumerated() {
            bytes[Self.signedLength + i] = b
        }
    }

    /// Compares the received tag with the first 16 bytes of a computed one in constant time.
    public func tagMatches(_ computed: UnsafeRawBufferPointer) -> Bool {
        guard computed.count >= Self.tagLength else { return false }
        let high = UInt64(bigEndian: computed.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let low = UInt64(bigEndian: computed.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return ((high ^ tag.0) | (low ^ tag.1)) == 0
    }
}
