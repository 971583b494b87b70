import Testing

@testable import PimeshCore

@Suite struct HeartbeatDatagramTests {
    let id = AgentID("0123abcd-4567-4890-a1b2-c3d4e5f60718")!

    func sample() -> HeartbeatDatagram {
        HeartbeatDatagram(
            state: .conflict, agentID: id, iteration: 0x0102_0304_0506_0708, timestampMs: 1_795_000_000_123,
            queueDepth: 0x0A0B_0C0D, progress: 42, tag: (0x1111_2222_3333_4444, 0x5555_6666_7777_8888))
    }

    func encoded(_ datagram: HeartbeatDatagram) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: HeartbeatDatagram.size)
        var tag: [UInt8] = []
        for word in [datagram.tag.0, datagram.tag.1] {
            for shift in stride(from: 56, through: 0, by: -8) { tag.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        bytes.withUnsafeMutableBytes { datagram.encode(into: $0, tag: tag) }
        return bytes
    }

    @Test func layoutIsBigEndianAsDocumented() {
        let bytes = encoded(sample())
        #expect(bytes.count == 64)
        #expect(bytes[0] == 1)
        #expect(bytes[1] == 0xFF)  // −1, CONFLICT
        #expect(bytes[2] == 0 && bytes[3] == 0)
        #expect(Array(bytes[4..<8]) == [0x01, 0x23, 0xAB, 0xCD])
        #expect(Array(bytes[20..<28]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(bytes[36..<40]) == [0x0A, 0x0B, 0x0C, 0x0D])
        #expect(bytes[47] == 42)
        #expect(Array(bytes[48..<50]) == [0x11, 0x11])
        #expect(bytes[63] == 0x88)
    }

    @Test func roundTrip() {
        let bytes = encoded(sample())
        let decoded = bytes.withUnsafeBytes { HeartbeatDatagram.decode($0) }
        guard case .heartbeat(let datagram) = decoded else {
            Issue.record("decode failed: \(decoded)")
            return
        }
        #expect(datagram == sample())
    }

    @Test(arguments: [0, 1, 47, 63])
    func shortIsDropped(length: Int) {
        let bytes = Array(encoded(sample()).prefix(length))
        #expect(reason(bytes) == .short)
    }

    @Test func longIsDropped() {
        #expect(reason(encoded(sample()) + [0]) == .long)
        #expect(reason([UInt8](repeating: 1, count: 1500)) == .long)
    }

    @Test func unknownVersionAndMalformed() {
        var bytes = encoded(sample())
        bytes[0] = 3
        #expect(reason(bytes) == .unknownVersion)
        // Version 2 is 80 bytes: a 64-byte datagram that claims it is short of its acknowledgement.
        bytes[0] = 2
        #expect(reason(bytes) == .short)
        bytes = encoded(sample())
        bytes[1] = 7
        #expect(reason(bytes) == .malformed)
        bytes = encoded(sample())
        bytes[3] = 1
        #expect(reason(bytes) == .malformed)
    }

    @Test func tagComparison() {
        let datagram = sample()
        let right = encoded(datagram)
        right.withUnsafeBytes { raw in
            #expect(datagram.tagMatches(UnsafeRawBufferPointer(rebasing: raw[48..<64])))
            #expect(!datagram.tagMatches(UnsafeRawBufferPointer(rebasing: raw[40..<56])))
            #expect(!datagram.tagMatches(UnsafeRawBufferPointer(rebasing: raw[48..<60])))
        }
    }

    func reason(_ bytes: [UInt8]) -> HeartbeatDropReason? {
        if case .drop(let reason) = bytes.withUnsafeBytes({ HeartbeatDatagram.decode($0) }) { return reason }
        return nil
    }
}

@Suite struct HeartbeatAdmissionTests {
    let admission = HeartbeatAdmission()
    let now: Int64 = 1_800_000_000_000

    @Test func iterationMustIncrease() {
        #expect(admission.check(iteration: 5, lastIteration: nil, timestampMs: now, nowWallMs: now) == nil)
        #expect(admission.check(iteration: 6, lastIteration: 5, timestampMs: now, nowWallMs: now) == nil)
        #expect(admission.check(iteration: 5, lastIteration: 5, timestampMs: now, nowWallMs: now) == .replayed)
        #expect(admission.check(iteration: 4, lastIteration: 5, timestampMs: now, nowWallMs: now) == .replayed)
    }

    /// A starting agent's floor goes no higher than the clock (µs) plus the skew; heartbeats
    /// stamped before it was lowered are stale.
    @Test func aLoweredFloorHasACeilingAndANotBefore() {
        #expect(admission.iterationCeiling(nowWallMs: now) == UInt64(now + 30_000) * 1000)
        #expect(admission.iterationCeiling(nowWallMs: .max) == .max)
        #expect(admission.iterationCeiling(nowWallMs: .min) == 0)
        #expect(admission.check(iteration: 9, lastIteration: 5, timestampMs: now - 1, nowWallMs: now, notBeforeMs: now) == .stale)
        #expect(admission.check(iteration: 9, lastIteration: 5, timestampMs: now, nowWallMs: now, notBeforeMs: now) == nil)
        // The clock stepped back an hour since the lowering: honest heartbeats are older than it.
        let back = now - 3_600_000
        #expect(admission.check(iteration: 9, lastIteration: 5, timestampMs: back, nowWallMs: back, notBeforeMs: now) == nil)
        #expect(admission.check(iteration: 9, lastIteration: 5, timestampMs: now - 1, nowWallMs: back, notBeforeMs: now) == .stale, "too far ahead")
        #expect(admission.check(iteration: 9, lastIteration: 5, timestampMs: now - 30_001, nowWallMs: now - 30_000, notBeforeMs: now) == .stale)
        #expect(admission.check(iteration: 9, lastIteration: 5, timestampMs: .min, nowWallMs: .max, notBeforeMs: .max) == .stale)
    }

    @Test func timestampMustBeNearTheLeadsClock() {
        #expect(admission.check(iteration: 1, lastIteration: nil, timestampMs: now - 30_000, nowWallMs: now) == nil)
        #expect(admission.check(iteration: 1, lastIteration: nil, timestampMs: now - 30_001, nowWallMs: now) == .stale)
        #expect(admission.check(iteration: 1, lastIteration: nil, timestampMs: now + 30_001, nowWallMs: now) == .stale)
        #expect(admission.check(iteration: 1, lastIteration: nil, timestampMs: .min, nowWallMs: now) == .stale)
        #expect(admission.check(iteration: 1, lastIteration: nil, timestampMs: .max, nowWallMs: now) == .stale)
    }

    @Test func countersAccountByReason() {
        var counters = HeartbeatCounters()
        counters.recordAccepted()
        counters.recordDropped(.badTag)
        counters.recordDropped(.badTag)
        counters.recordDropped(.short)
        #expect(counters.accepted == 1)
        #expect(counters.dropped(.badTag) == 2)
        #expect(counters.totalDropped == 3)
        #expect(counters.droppedByReason.count == HeartbeatDropReason.allCases.count)
    }
}

@Suite struct AgentIDTests {
    @Test func parsesAndPrintsCanonicalForm() {
        let text = "0123abcd-4567-4890-a1b2-c3d4e5f60718"
        #expect(AgentID(text)?.description == text)
        #expect(AgentID(text.uppercased())?.description == text)
    }

    @Test func printsEveryNibbleInItsPlace() {
        #expect(AgentID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210).description == "01234567-89ab-cdef-fedc-ba9876543210")
        #expect(AgentID(high: 0, low: 0).description == "00000000-0000-0000-0000-000000000000")
        #expect(AgentID(high: .max, low: .max).description == "ffffffff-ffff-ffff-ffff-ffffffffffff")
    }

    @Test(arguments: ["", "0123abcd45674890a1b2c3d4e5f60718", "0123abcd-4567-4890-a1b2-c3d4e5f6071g", "0123abcd-4567-4890-a1b2_c3d4e5f60718"])
    func rejectsMalformed(text: String) {
        #expect(AgentID(text) == nil)
    }

    @Test func randomIsVersion4() {
        var generator = SystemRandomNumberGenerator()
        let id = AgentID.random(using: &generator)
        let text = id.description
        #expect(Array(text)[14] == "4")
        #expect("89ab".contains(Array(text)[19]))
        #expect(AgentID(text) == id)
    }

    @Test func hexRoundTrip() {
        #expect(Hex.encode([0, 1, 0xAB, 0xFF]) == "0001abff")
        #expect(Hex.decode("0001ABff") == [0, 1, 0xAB, 0xFF])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}
