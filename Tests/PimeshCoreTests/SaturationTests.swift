import Testing

@testable import PimeshCore

/// Issue 20: one signed heartbeat with queue_depth 0xFFFFFFFF from a CLASS_F_HUMAN agent took
/// the lead down through an Int64 overflow in the arrival arithmetic. Every heartbeat field, at
/// every extreme, goes through scoring, routing and scatter-gather here without a trap.
@Suite struct SaturationTests {
    let now = Instant.seconds(1_000)

    @Test func conversionsSaturate() {
        #expect(Int64(saturating: .infinity) == .max)
        #expect(Int64(saturating: -.infinity) == .min)
        #expect(Int64(saturating: .nan) == 0)
        #expect(Int64(saturating: 1e300) == .max)
        #expect(Int64(saturating: 2.5) == 3)
        #expect(Int64.max.saturatingAdd(1) == .max)
        #expect(Int64.min.saturatingAdd(-1) == .min)
        #expect(Int64.max.saturatingMultiply(-2) == .min)
        #expect(Int.score(fromQuality: .nan) == 1000)
        #expect(Int.score(fromQuality: 2) == 0)
        #expect(now.advanced(byMilliseconds: 1e30) == Instant(nanoseconds: .max))
        #expect(Instant(nanoseconds: .min).advanced(byMilliseconds: -1e30) == Instant(nanoseconds: .min))
        #expect(Instant(nanoseconds: .max) - Instant(nanoseconds: .min) == .nanoseconds(Int64.max))
        #expect(Instant(nanoseconds: .max) + .seconds(1) == Instant(nanoseconds: .max))
    }

    @Test func queueDepthIsClampedWhereItIsAdmitted() {
        var tracker = ImpedanceTracker(agentClass: .human)
        tracker.recordHeartbeat(at: now, oneWayLatencyMs: 1, queueDepth: Int(UInt32.max))
        #expect(tracker.queueDepth == AgentClass.maxQueueDepth)
        tracker.recordHeartbeat(at: now, oneWayLatencyMs: 1, queueDepth: -5)
        #expect(tracker.queueDepth == 0)
    }

    /// The reproduction of the crash, in the core: ask and a task with a deadline.
    @Test func extremeQueueDepthOfAHumanAgentRoutesAndPlans() {
        var tracker = ImpedanceTracker(agentClass: .human)
        tracker.recordHeartbeat(at: now, oneWayLatencyMs: 5, queueDepth: Int(UInt32.max))
        let impedance = tracker.impedance(at: now)
        #expect(impedance.leadTimeMs.isFinite)
        let plan = ScatterGather().plan(leadTimesMs: [impedance.leadTimeMs, 200], now: now)
        #expect(plan.skipped.map(\.index) == [0])
        let candidate = RouteCandidate(agentClass: .human, latencyMs: 5, drift: 0, queueDepth: Int(UInt32.max))
        let decision = TaskRouter().route([candidate], payloadWeight: 1, deadlineMs: 1_000, now: now)
        guard case .skip = decision else {
            Issue.record("a deadline of 1 s cannot be met by a queue of 65,535 human items: \(decision)")
            return
        }
    }

    /// Every numeric heartbeat field through its range: 0, 1, mid, max and the wrapped values an
    /// agent can send (UInt64/UInt32 maxima, negative timestamps, far-future timestamps).
    @Test func everyFieldAtItsExtremes() {
        let queues: [Int] = [0, 1, 65_535, 65_536, Int(UInt32.max)]
        let latencies: [Double] = [0, 1, 1e9, Double(Int64.max), -1, .infinity, .nan]
        let weights: [Double] = [0, 1, 1e12, .infinity, .nan, -1]
        let deadlines: [Double?] = [nil, 0, 1, 1e15, .infinity, .nan]
        let progresses: [UInt64] = [0, 1, .max / 2, .max]
        for agentClass in AgentClass.allCases {
            for queue in queues {
                for latency in latencies {
                    var tracker = ImpedanceTracker(agentClass: agentClass)
                    tracker.recordHeartbeat(at: now, oneWayLatencyMs: latency, queueDepth: queue)
                    tracker.recordOutcome(succeeded: false, at: now)
                    let impedance = tracker.impedance(at: now)
                    #expect((0...1000).contains(impedance.score))
                    _ = ScatterGather().plan(leadTimesMs: [impedance.leadTimeMs, latency, .nan], now: now)
                    let candidate = RouteCandidate(
                        agentClass: agentClass, latencyMs: latency, drift: impedance.drift, queueDepth: queue,
                        processingCalibration: impedance.processingCalibration)
                    for weight in weights {
                        for deadline in deadlines {
                            _ = TaskRouter().route([candidate, candidate], payloadWeight: weight, deadlineMs: deadline, now: now)
                        }
                    }
                }
            }
        }
        var watchdog = ProgressWatchdog()
        var at = now
        for progress in progresses + progresses.reversed() {
            at = at + .milliseconds(250)
            watchdog.observe(progress: progress, busy: true, at: at)
            _ = watchdog.verdict(busy: true, at: at)
        }
        let admission = HeartbeatAdmission()
        for timestamp: Int64 in [.min, -1, 0, 1, .max] {
            for nowWall: Int64 in [.min, 0, .max] {
                _ = admission.check(iteration: .max, lastIteration: .max - 1, timestampMs: timestamp, nowWallMs: nowWall)
            }
        }
    }
}
