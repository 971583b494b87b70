import Testing

@testable import PimeshCore

@Suite struct AgentClassTests {
    @Test func baseProcessingTimesAreTheSeeds() {
        let expected: [AgentClass: Double] = [
            .edge: 10, .serverless: 50, .persistent: 200, .gpu: 100, .local: 150, .human: 60_000,
        ]
        for (agentClass, base) in expected {
            #expect(agentClass.baseProcessingMs == base)
            #expect(agentClass.estimateProcessingMs(payloadWeight: 0, queueDepth: 0) == base)
        }
    }

    @Test func estimateProcessingFollowsSeedFormula() {
        // base × (1 + 0.5·weight) × (1 + 0.1·queue): 150 × 1.5 × 1.5
        #expect(AgentClass.local.estimateProcessingMs(payloadWeight: 1, queueDepth: 5) == 337.5)
        // 200 × 2 × 2
        #expect(AgentClass.persistent.estimateProcessingMs(payloadWeight: 2, queueDepth: 10) == 800)
        // Nonsense inputs do not make work faster than the base.
        #expect(AgentClass.edge.estimateProcessingMs(payloadWeight: -3, queueDepth: -1) == 10)
    }

    @Test func classNamesParse() {
        #expect(AgentClass(name: "CLASS_E_LOCAL") == .local)
        #expect(AgentClass(name: "e") == .local)
        #expect(AgentClass(name: "gpu") == .gpu)
        #expect(AgentClass(name: "CLASS_Z") == nil)
    }
}

@Suite struct ImpedanceTrackerTests {
    let start = Instant.seconds(1000)

    @Test func confidenceUsesSeedWeights() {
        var clock = ManualClock(start: start)
        var tracker = ImpedanceTracker(agentClass: .local)
        for i in 0..<10 { tracker.recordOutcome(succeeded: i != 0, at: clock.now) }
        // No heartbeat yet: 0.5 × 0.9 − 0.3 × 0
        #expect(abs(tracker.confidence(at: clock.now) - 0.45) < 1e-9)
        tracker.recordHeartbeat(at: clock.now, oneWayLatencyMs: 20, queueDepth: 0)
        clock.advance(by: .seconds(9))
        // Fresh heartbeat adds 0.2.
        #expect(abs(tracker.confidence(at: clock.now) - 0.65) < 1e-9)
        clock.advance(by: .seconds(1))
        // Exactly 10 s old is no longer recent.
        #expect(abs(tracker.confidence(at: clock.now) - 0.45) < 1e-9)
    }

    @Test func confidenceIsClamped() {
        var tracker = ImpedanceTracker(agentClass: .local)
        for _ in 0..<5 { tracker.recordOutcome(succeeded: false, at: start) }
        for i in 0..<100 { tracker.recordHeartbeat(at: start, oneWayLatencyMs: i % 2 == 0 ? 10 : 190, queueDepth: 0) }
        // 0 − 0.3 × 0.9 + 0.2 < 0
        #expect(tracker.confidence(at: start) == 0)
        var perfect = ImpedanceTracker(agentClass: .local)
        perfect.recordHeartbeat(at: start, oneWayLatencyMs: 5, queueDepth: 0)
        #expect(abs(perfect.confidence(at: start) - 0.7) < 1e-9)
    }

    @Test func driftIsSigmaOverMean() {
        var steady = ImpedanceTracker(agentClass: .local)
        for _ in 0..<50 { steady.recordHeartbeat(at: start, oneWayLatencyMs: 100, queueDepth: 0) }
        #expect(steady.drift == 0)
        var swinging = ImpedanceTracker(agentClass: .local)
        for i in 0..<50 { swinging.recordHeartbeat(at: start, oneWayLatencyMs: i % 2 == 0 ? 50 : 150, queueDepth: 0) }
        // mean 100, σ 50: exactly the seed's "unstable" line, not above it.
        #expect(abs(swinging.drift - 0.5) < 1e-9)
        #expect(swinging.impedance(at: start).isUnstable == false)
    }

    @Test func loopbackJitterIsNotDrift() {
        var tracker = ImpedanceTracker(agentClass: .local)
        for i in 0..<100 { tracker.recordHeartbeat(at: start, oneWayLatencyMs: i % 2 == 0 ? 0.1 : 0.3, queueDepth: 0) }
        // σ 0.1 ms against the 10 ms floor.
        #expect(abs(tracker.drift - 0.01) < 1e-9)
    }

    @Test func latencyRingKeepsTheLastHundred() {
        var tracker = ImpedanceTracker(agentClass: .local)
        for i in 0..<150 { tracker.recordHeartbeat(at: start, oneWayLatencyMs: Double(i), queueDepth: 0) }
        #expect(tracker.latency.count == 100)
        #expect(tracker.latency.samples.min() == 50)
        #expect(tracker.latency.percentile(50) == 99)
    }

    @Test func reliabilityForgetsOutcomesOlderThanAnHour() {
        var clock = ManualClock(start: start)
        var tracker = ImpedanceTracker(agentClass: .local)
        for _ in 0..<4 { tracker.recordOutcome(succeeded: false, at: clock.now) }
        clock.advance(by: .seconds(30 * 60))
        tracker.recordOutcome(succeeded: true, at: clock.now)
        #expect(tracker.reliability(at: clock.now) == 0.2)
        // 61 minutes after the failures they have left the window.
        clock.advance(by: .seconds(31 * 60))
        #expect(tracker.reliability(at: clock.now) == 1)
        #expect(tracker.impedance(at: clock.now).outcomes == 1)
        // Nothing at all to judge by: reliable until shown otherwise.
        #expect(ImpedanceTracker(agentClass: .local).reliability(at: clock.now) == 1)
    }

    @Test func impedanceUsesQueueDepthAndLatency() {
        var tracker = ImpedanceTracker(agentClass: .local)
        tracker.recordHeartbeat(at: start, oneWayLatencyMs: 20, queueDepth: 5)
        let impedance = tracker.impedance(at: start)
        #expect(impedance.processingMs == 225)  // 150 × 1.5
        #expect(impedance.predictedArrivalMs == 245)
        #expect(impedance.score == ImpedanceScore.score(predictedArrivalMs: 245, reliability: 1, drift: 0))
    }
}

@Suite struct ImpedanceScoreTests {
    @Test(arguments: [
        // arrival ms, reliability, drift, score — the worked examples of docs/impedance.md
        (0.0, 1.0, 0.0, 0),
        (155.0, 1.0, 0.0, 134),
        (1000.0, 1.0, 0.0, 500),
        (4000.0, 1.0, 0.0, 800),
        (0.0, 0.5, 0.0, 500),
        (0.0, 1.0, 0.5, 333),
        (245.0, 0.9, 0.2, 398),
        (60_000.0, 1.0, 0.0, 984),
    ])
    func workedExamples(arrival: Double, reliability: Double, drift: Double, expected: Int) {
        #expect(ImpedanceScore.score(predictedArrivalMs: arrival, reliability: reliability, drift: drift) == expected)
    }

    @Test func scoreStaysInRange() {
        #expect(ImpedanceScore.score(predictedArrivalMs: -5, reliability: 2, drift: -1) == 0)
        #expect(ImpedanceScore.score(predictedArrivalMs: .infinity, reliability: 0, drift: 10) == 1000)
    }

    @Test func degradedIsAbove800() {
        var slow = ImpedanceTracker(agentClass: .human)
        slow.recordHeartbeat(at: .seconds(1), oneWayLatencyMs: 1, queueDepth: 0)
        #expect(slow.impedance(at: .seconds(1)).isDegraded)
        var fast = ImpedanceTracker(agentClass: .edge)
        fast.recordHeartbeat(at: .seconds(1), oneWayLatencyMs: 1, queueDepth: 0)
        #expect(!fast.impedance(at: .seconds(1)).isDegraded)
        // 4,000 ms is exactly 800: degraded is strictly above.
        let settings = ImpedanceScore.Settings()
        #expect(ImpedanceScore.score(predictedArrivalMs: 4000, reliability: 1, drift: 0) == settings.degradedAbove)
    }
}
