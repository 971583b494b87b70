import Testing

@testable import PimeshCore

@Suite struct WorkProtocolTests {
    let id = AgentID("0123abcd-4567-4890-a1b2-c3d4e5f60718")!

    func bytes(_ datagram: WorkDatagram, tag: [UInt8] = Array(repeating: 0xAB, count: 16)) -> [UInt8] {
        datagram.signedPart() + tag
    }

    @Test func aWorkDatagramHasTheDocumentedLayoutAndRoundTrips() {
        let datagram = WorkDatagram(kind: .item, agentID: id, sequence: 0x0102_0304_0506_0708, timestampMs: 1_795_000_000_123, body: Array("{\"id\":\"t\"}".utf8))
        let encoded = bytes(datagram)
        #expect(encoded.count == 40 + 10 + 16)
        #expect(encoded[0] == 2 && encoded[1] == 1 && encoded[2] == 0 && encoded[3] == 0)
        #expect(Array(encoded[4..<8]) == [0x01, 0x23, 0xAB, 0xCD])
        #expect(Array(encoded[20..<28]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(encoded[36..<40]) == [0, 0, 0, 10])
        #expect(encoded[40] == UInt8(ascii: "{"))
        #expect(encoded.withUnsafeBytes { WorkDatagram.decode($0) } == .work(datagram, signedLength: 50))
    }

    @Test func damagedDatagramsAreRefusedWithTheReason() {
        let good = bytes(WorkDatagram(kind: .item, agentID: id, sequence: 1, timestampMs: 0, body: [1, 2, 3]))
        func refusal(_ bytes: [UInt8]) -> WorkDatagram.Decoded { bytes.withUnsafeBytes { WorkDatagram.decode($0) } }
        #expect(refusal(Array(good.prefix(55))) == .refused(.short))
        #expect(refusal(good + [0]) == .refused(.badLength))
        #expect(refusal([UInt8](repeating: 0, count: 9000)) == .refused(.long))
        var version = good
        version[0] = 1
        #expect(refusal(version) == .refused(.unknownVersion))
        var kind = good
        kind[1] = 9
        #expect(refusal(kind) == .refused(.malformed))
        var fetchWithBody = good
        fetchWithBody[1] = 2
        #expect(refusal(fetchWithBody) == .refused(.badLength))
    }

    @Test func aHeartbeatV2CarriesTheAcknowledgementAndV1IsUnchanged() {
        var heartbeat = HeartbeatDatagram(state: .ready, agentID: id, iteration: 5, timestampMs: 7, queueDepth: 1, progress: 2)
        #expect(heartbeat.encodedSize == 64 && heartbeat.encodedVersion == 1)
        heartbeat.workAck = WorkAck(highest: 0x1122, window: 0b101)
        var encoded = [UInt8](repeating: 0, count: heartbeat.encodedSize)
        encoded.withUnsafeMutableBytes { heartbeat.encode(into: $0, tag: [UInt8](repeating: 0x55, count: 16)) }
        #expect(encoded.count == 80 && encoded[0] == 2)
        #expect(Array(encoded[54..<56]) == [0x11, 0x22] && encoded[63] == 0b101 && encoded[64] == 0x55)
        guard case .heartbeat(let decoded) = encoded.withUnsafeBytes({ HeartbeatDatagram.decode($0) }) else {
            Issue.record("not decoded")
            return
        }
        #expect(decoded.workAck == heartbeat.workAck)
        #expect(decoded.tag == (0x5555_5555_5555_5555, 0x5555_5555_5555_5555))
        #expect(Array(encoded.prefix(64)).withUnsafeBytes { HeartbeatDatagram.decode($0) } == .drop(.short))
        #expect((encoded + [0]).withUnsafeBytes { HeartbeatDatagram.decode($0) } == .drop(.long))
    }

    @Test func theWindowTakesEachSequenceOnceInAnyOrder() {
        var window = WorkWindow()
        func receive(_ sequence: UInt64) -> Bool { window.receive(sequence) }
        #expect(receive(0) == false)
        #expect(receive(100))
        #expect(receive(100) == false)
        #expect(receive(103))
        #expect(receive(101))
        #expect(receive(101) == false)
        #expect(window.ack.highest == 103)
        #expect(window.ack.covers(100) && window.ack.covers(101) && !window.ack.covers(102) && window.ack.covers(103))
        #expect(receive(102))
        #expect(receive(103 + 64))
        #expect(window.ack.covers(103) && !window.ack.covers(102))
        #expect(receive(102) == false, "more than 64 below the highest: a replay")
        #expect(receive(1_000_000))
        #expect(window.ack.window == 0)
    }

    /// A lead restarted after the wall clock stepped back an hour: the agent's window still
    /// holds the earlier lead's sequences, so the new link starts above them, and the agent
    /// takes its first datagram as new.
    @Test func aNewLinkStartsAboveTheAgentsWindowWhenTheClockSteppedBack() {
        let now: UInt64 = 1_764_900_000_000_000
        let hourAhead = now + 3_600_000_000
        var window = WorkWindow()
        _ = window.receive(hourAhead)
        let first = WorkOutbox<Int>.firstSequence(wallMicroseconds: now, agentHighest: window.ack.highest)
        #expect(first == hourAhead + 1)
        let taken = window.receive(first)
        #expect(taken, "the agent takes the new lead's first datagram as new")
        // An agent that has seen nothing, or one whose window is behind the clock: the clock.
        #expect(WorkOutbox<Int>.firstSequence(wallMicroseconds: now, agentHighest: 0) == now)
        #expect(WorkOutbox<Int>.firstSequence(wallMicroseconds: now, agentHighest: now - 5) == now)
        // A signed acknowledgement near the end of the range does not run the lead's sequence
        // there (an overflow would trap): that agent only loses its own datagrams.
        var outbox = WorkOutbox<Int>(firstSequence: WorkOutbox<Int>.firstSequence(wallMicroseconds: now, agentHighest: .max))
        #expect(outbox.nextSequence == now)
        let sequence = outbox.sent(1, at: Instant(nanoseconds: 0))
        #expect(sequence == now)
    }

    @Test func theOutboxRetransmitsWithBackoffUntilAcknowledgedOrGivenUp() {
        let start = Instant(nanoseconds: 1_000_000_000)
        var outbox = WorkOutbox<String>(firstSequence: 500, settings: .init(retransmitAfter: .milliseconds(100), maxInterval: .milliseconds(400), maxSends: 4, capacity: 2))
        func due(at now: Instant) -> [WorkOutbox<String>.Pending] { outbox.due(at: now) }
        let a = outbox.sent("a", at: start)
        let b = outbox.sent("b", at: start)
        #expect((a, b) == (500, 501))
        #expect(!outbox.hasRoom)
        #expect(due(at: start + .milliseconds(99)).isEmpty)
        #expect(due(at: start + .milliseconds(100)).map(\.item) == ["a", "b"])
        #expect(outbox.nextDue == start + .milliseconds(300))
        // The agent got b only.
        var window = WorkWindow()
        _ = window.receive(b)
        let acknowledged = outbox.acknowledge(window.ack)
        #expect(acknowledged == 1)
        #expect(outbox.pending.map(\.item) == ["a"])
        #expect(due(at: start + .milliseconds(300)).map(\.sends) == [3])
        #expect(due(at: start + .milliseconds(700)).map(\.sends) == [4])
        #expect(due(at: start + .milliseconds(1100)).isEmpty)
        #expect(outbox.pending.isEmpty && outbox.givenUp == 1)
        // A datagram stuck unacknowledged holds the window: no sequence 64 above it is sent.
        var wide = WorkOutbox<Int>(firstSequence: 1, settings: .init(capacity: 64))
        let stuck = wide.sent(0, at: start)
        var agent = WorkWindow()
        for n in 1..<64 {
            #expect(wide.hasRoom)
            let sequence = wide.sent(n, at: start)
            _ = agent.receive(sequence)
            wide.acknowledge(agent.ack)
        }
        #expect(!wide.hasRoom, "sequence 65 would put \(stuck) out of the agent's window")
        let retransmissionTaken = agent.receive(stuck)
        #expect(retransmissionTaken, "still inside the window: its retransmission is taken")
        let c = outbox.sent("c", at: start)
        outbox.remove { $0 == "c" }
        #expect(c == 502 && outbox.pending.isEmpty)
    }
}
