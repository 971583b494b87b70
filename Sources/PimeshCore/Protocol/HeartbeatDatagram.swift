/// Heartbeat protocol v1: one fixed 64-byte datagram, big-endian (docs/protocol.md).
/// Version 2 (80 bytes) adds, before the tag, the acknowledgement of work datagrams: an agent
/// that sends v2 heartbeats receives its work as datagrams on the socket it sends them from.
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
    /// Version 2: the v1 fields, then `ack_highest` and `ack_window` (8 bytes each), then the tag.
    public static let versionWithAck: UInt8 = 2
    public static let sizeWithAck = 80

    public var state: TrinaryState
    public var agentID: AgentID
    public var iteration: UInt64
    public var timestampMs: Int64
    public var queueDepth: UInt32
    public var progress: UInt64
    /// Version 2 only: the work datagrams the agent has received.
    public var workAck: WorkAck?
    /// Version 2 only (bytes 2–3): how many tasks the agent works on at once; the lead sends no
    /// more until one finishes, so that the rest waits where it can still be routed or stolen.
    /// 0: no limit.
    public var workSlots: UInt16
    /// The received tag, as two words so that holding it allocates nothing.
    public var tag: (UInt64, UInt64)

    public init(
        state: TrinaryState, agentID: AgentID, iteration: UInt64, timestampMs: Int64,
        queueDepth: UInt32, progress: UInt64, workAck: WorkAck? = nil, workSlots: UInt16 = 0, tag: (UInt64, UInt64) = (0, 0)
    ) {
        self.workSlots = workSlots
        self.state = state
        self.agentID = agentID
        self.iteration = iteration
        self.timestampMs = timestampMs
        self.queueDepth = queueDepth
        self.progress = progress
        self.workAck = workAck
        self.tag = tag
    }

    public var encodedVersion: UInt8 { workAck == nil ? Self.version : Self.versionWithAck }
    public var encodedSize: Int { workAck == nil ? Self.size : Self.sizeWithAck }
    /// The bytes the tag covers: everything before it.
    public var encodedSignedLength: Int { encodedSize - Self.tagLength }

    public static func == (lhs: HeartbeatDatagram, rhs: HeartbeatDatagram) -> Bool {
        lhs.state == rhs.state && lhs.agentID == rhs.agentID && lhs.iteration == rhs.iteration
            && lhs.timestampMs == rhs.timestampMs && lhs.queueDepth == rhs.queueDepth
            && lhs.progress == rhs.progress && lhs.workAck == rhs.workAck && lhs.workSlots == rhs.workSlots && lhs.tag == rhs.tag
    }

    public enum Decoded: Sendable, Equatable {
        case heartbeat(HeartbeatDatagram)
        case drop(HeartbeatDropReason)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoded {
        if bytes.count < size { return .drop(.short) }
        let expected: Int
        switch bytes[0] {
        case version: expected = size
        case versionWithAck: expected = sizeWithAck
        default: return bytes.count > sizeWithAck ? .drop(.long) : .drop(.unknownVersion)
        }
        if bytes.count < expected { return .drop(.short) }
        if bytes.count > expected { return .drop(.long) }
        // In v2, bytes 2–3 are the agent's work slots; in v1 they are reserved.
        guard expected == sizeWithAck || (bytes[2] == 0 && bytes[3] == 0),
            let state = TrinaryState(rawValue: Int8(bitPattern: bytes[1]))
        else { return .drop(.malformed) }
        func u64(_ offset: Int) -> UInt64 {
            UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        let tagOffset = expected - tagLength
        return .heartbeat(
            HeartbeatDatagram(
                state: state,
                agentID: AgentID(bytes: bytes, offset: 4),
                iteration: u64(20),
                timestampMs: Int64(bitPattern: u64(28)),
                queueDepth: UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 36, as: UInt32.self)),
                progress: u64(40),
                workAck: expected == sizeWithAck ? WorkAck(highest: u64(48), window: u64(56)) : nil,
                workSlots: expected == sizeWithAck ? UInt16(bytes[2]) << 8 | UInt16(bytes[3]) : 0,
                tag: (u64(tagOffset), u64(tagOffset + 8))
            ))
    }

    /// Writes the signed part (bytes 0..<`encodedSignedLength`) into `bytes`.
    public func encodeSignedPart(into bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count >= encodedSignedLength)
        bytes[0] = encodedVersion
        bytes[1] = UInt8(bitPattern: state.rawValue)
        bytes[2] = workAck == nil ? 0 : UInt8(truncatingIfNeeded: workSlots >> 8)
        bytes[3] = workAck == nil ? 0 : UInt8(truncatingIfNeeded: workSlots)
        agentID.write(to: bytes, offset: 4)
        bytes.storeBytes(of: iteration.bigEndian, toByteOffset: 20, as: UInt64.self)
        bytes.storeBytes(of: UInt64(bitPattern: timestampMs).bigEndian, toByteOffset: 28, as: UInt64.self)
        bytes.storeBytes(of: queueDepth.bigEndian, toByteOffset: 36, as: UInt32.self)
        bytes.storeBytes(of: progress.bigEndian, toByteOffset: 40, as: UInt64.self)
        if let workAck {
            bytes.storeBytes(of: workAck.highest.bigEndian, toByteOffset: 48, as: UInt64.self)
            bytes.storeBytes(of: workAck.window.bigEndian, toByteOffset: 56, as: UInt64.self)
        }
    }

    /// Writes a whole datagram: the signed part, then the first 16 bytes of `fullTag`.
    public func encode<T: Collection>(into bytes: UnsafeMutableRawBufferPointer, tag fullTag: T) where T.Element == UInt8 {
        precondition(bytes.count >= encodedSize && fullTag.count >= Self.tagLength)
        encodeSignedPart(into: bytes)
        for (i, b) in fullTag.prefix(Self.tagLength).enumerated() {
            bytes[encodedSignedLength + i] = b
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
