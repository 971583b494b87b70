/// Work protocol v2, lead → agent: one work item (or a note to fetch) per datagram, sent to the
/// address an agent's v2 heartbeats come from (docs/protocol.md, "Work datagrams").
///
///     0   1  version (2)
///     1   1  kind: 1 item (the body is one work item as JSON), 2 fetch (no body: the items did
///            not fit; take them with a short `GET /v1/agents/{id}/work?wait_ms=0`)
///     2   2  reserved, zero
///     4  16  agent id
///     20  8  sequence: per agent, increasing; acknowledged in the agent's heartbeats
///     28  8  timestamp_ms, Unix epoch milliseconds when the lead sent it
///     36  4  body length
///     40  n  body
///   40+n 16  tag: HMAC-SHA256(agent secret, bytes 0..<40+n), first 16 bytes
///
/// The body is opaque here: the shell encodes and decodes the JSON.
public struct WorkDatagram: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        case item = 1
        case fetch = 2
    }

    public static let version: UInt8 = 2
    public static let headerLength = 40
    public static let tagLength = 16
    /// The largest datagram either side sends or accepts; a work item that does not fit is
    /// announced with a `fetch` instead.
    public static let maxSize = 8192
    public static var maxBodyLength: Int { maxSize - headerLength - tagLength }

    public var kind: Kind
    public var agentID: AgentID
    public var sequence: UInt64
    public var timestampMs: Int64
    public var body: [UInt8]

    public init(kind: Kind, agentID: AgentID, sequence: UInt64, timestampMs: Int64, body: [UInt8] = []) {
        self.kind = kind
        self.agentID = agentID
        self.sequence = sequence
        self.timestampMs = timestampMs
        self.body = body
    }

    public var size: Int { Self.headerLength + body.count + Self.tagLength }

    /// The bytes the tag covers.
    public func signedPart() -> [UInt8] {
        precondition(body.count <= Self.maxBodyLength)
        var bytes = [UInt8](repeating: 0, count: Self.headerLength + body.count)
        bytes.withUnsafeMutableBytes { buffer in
            buffer[0] = Self.version
            buffer[1] = kind.rawValue
            agentID.write(to: buffer, offset: 4)
            buffer.storeBytes(of: sequence.bigEndian, toByteOffset: 20, as: UInt64.self)
            buffer.storeBytes(of: UInt64(bitPattern: timestampMs).bigEndian, toByteOffset: 28, as: UInt64.self)
            buffer.storeBytes(of: UInt32(body.count).bigEndian, toByteOffset: 36, as: UInt32.self)
        }
        bytes.replaceSubrange(Self.headerLength..., with: body)
        return bytes
    }

    public enum Refusal: String, Sendable, Equatable {
        case short, long, unknownVersion = "unknown_version", malformed, badLength = "bad_length"
    }

    public enum Decoded: Sendable, Equatable {
        /// The datagram and how many leading bytes its tag covers.
        case work(WorkDatagram, signedLength: Int)
        case refused(Refusal)
    }

    /// Reads a received datagram; the caller checks the tag over `signedLength` bytes.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Decoded {
        if bytes.count < headerLength + tagLength { return .refused(.short) }
        if bytes.count > maxSize { return .refused(.long) }
        if bytes[0] != version { return .refused(.unknownVersion) }
        guard bytes[2] == 0, bytes[3] == 0, let kind = Kind(rawValue: bytes[1]) else { return .refused(.malformed) }
        let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 36, as: UInt32.self)))
        guard headerLength + length + tagLength == bytes.count, kind == .item || length == 0 else { return .refused(.badLength) }
        let datagram = WorkDatagram(
            kind: kind, agentID: AgentID(bytes: bytes, offset: 4),
            sequence: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 20, as: UInt64.self)),
            timestampMs: Int64(bitPattern: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 28, as: UInt64.self))),
            body: Array(bytes[headerLength..<(headerLength + length)]))
        return .work(datagram, signedLength: headerLength + length)
    }
}

/// What an agent has received, carried in its v2 heartbeats: the highest sequence and, in
/// `window`, the 64 below it (bit i set: `highest − 1 − i` arrived), as IPsec's anti-replay
/// window does (RFC 4303 §3.4.3).
public struct WorkAck: Equatable, Sendable {
    public var highest: UInt64
    public var window: UInt64

    public init(highest: UInt64, window: UInt64) {
        self.highest = highest
        self.window = window
    }

    public static let none = WorkAck(highest: 0, window: 0)

    public func covers(_ sequence: UInt64) -> Bool {
        guard sequence != 0, sequence <= highest else { return false }
        if sequence == highest { return true }
        let distance = highest - sequence
        return distance <= 64 && window & (1 << (distance - 1)) != 0
    }
}

/// The agent's side: which work datagrams it has seen. A sequence seen before, or more than
/// 64 below the highest, is a duplicate (a retransmission or a replay) and is not worked on again.
public struct WorkWindow: Sendable, Equatable {
    public private(set) var ack = WorkAck.none

    public init() {}

    /// Records `sequence`; true when it is new.
    public mutating func receive(_ sequence: UInt64) -> Bool {
        guard sequence != 0 else { return false }
        if sequence > ack.highest {
            let shift = sequence - ack.highest
            // The old highest becomes bit shift − 1 and the older ones move along with it.
            ack.window = ack.highest == 0 || shift > 64 ? 0 : (ack.window << shift) | (1 << (shift - 1))
            ack.highest = sequence
            return true
        }
        if ack.covers(sequence) { return false }
        let distance = ack.highest - sequence
        guard distance <= 64 else { return false }
        ack.window |= 1 << (distance - 1)
        return true
    }
}
