import Testing

@testable import PimeshCore

@Suite struct TaskRouterTests {
    let router = TaskRouter()
    let now = Instant.seconds(50)

    func local(latency: Double, queue: Int = 0, drift: Double = 0, _ availability: RouteCandidate.Availability = .available)
        -> RouteCandidate
    {
        RouteCandidate(agentClass: .local, latencyMs: latency, drift: drift, queueDepth: queue, availability: availability)
    }

    @Test func picksTheLowestPredictedArrival() {
        // local, weight 1: 150 × 1.5 × (1 + 0.1·queue) + latency.
        let candidates = [local(latency: 5, queue: 3), local(latency: 40), local(latency: 10, queue: 1)]
        // 5 + 292.5 = 297.5; 40 + 225 = 265; 10 + 247.5 = 257.5
        guard case .sendNow(let choice) = router.route(candidates, payloadWeight: 1, deadlineMs: nil, now: now) else {
            Issue.record("expected a send")
            return
        }
        #expect(choice.index == 2)
        #expect(choice.predictedArrivalMs == 257.5)
        #expect(choice.runnerUp == .init(index: 1, predictedArrivalMs: 265))
        #expect(choice.eligible == 3)
    }

    @Test func theClassMatters() {
        let edge = RouteCandidate(agentClass: .edge, latencyMs: 50, drift: 0, queueDepth: 0)
        guard case .sendNow(let choice) = router.route([local(latency: 1), edge], payloadWeight: 0, deadlineMs: nil, now: now)
        else { return #expect(Bool(false)) }
        #expect(choice.index == 1)  // 50 + 10 beats 1 + 150
    }

    @Test func skipsWithoutCandidates() {
        #expect(router.route([], payloadWeight: 0, deadlineMs: nil, now: now) == .skip(.noCapableAgent))
    }

    @Test func skipsWhenNoneCanTakeWork() {
        let decision = router.route(
            [local(latency: 1, .notReady), local(latency: 1, .quarantined), local(latency: 1, .notReady)], payloadWeight: 0,
            deadlineMs: nil, now: now)
        #expect(decision == .skip(.noAvailableAgent(capable: 3, notReady: 2, quarantined: 1)))
    }

    @Test func quarantinedAndSilentAgentsAreNeverChosenEvenWhenFastest() {
        let decision = router.route(
            [local(latency: 0, .quarantined), local(latency: 0, .notReady), local(latency: 300)], payloadWeight: 0, deadlineMs: nil,
            now: now)
        guard case .sendNow(let choice) = decision else { return #expect(Bool(false)) }
        #expect(choice.index == 2)
    }

    @Test func deadlineEdges() {
        // One agent with lead time exactly 200 ms (latency 50 + 150, no drift).
        let candidate = [local(latency: 50)]
        // A deadline equal to the lead time, and 5 ms under it (the scheduler's tolerance), still send.
        #expect(router.route(candidate, payloadWeight: 0, deadlineMs: 200, now: now).isSend)
        #expect(router.route(candidate, payloadWeight: 0, deadlineMs: 195, now: now).isSend)
        // 6 ms under it is a skip that says what was needed.
        #expect(
            router.route(candidate, payloadWeight: 0, deadlineMs: 194, now: now)
                == .skip(.deadlineUnreachable(fastestLeadTimeMs: 200, deadlineMs: 194)))
    }

    @Test func driftPadsTheDeadlineCheckButNotTheRanking() {
        // A: 200 ms predicted, drift 0.5 → 300 ms lead time. B: 250 ms, steady.
        let a = local(latency: 50, drift: 0.5)
        let b = local(latency: 100)
        guard case .sendNow(let unhurried) = router.route([a, b], payloadWeight: 0, deadlineMs: nil, now: now) else {
            return #expect(Bool(false))
        }
        #expect(unhurried.index == 0)
        // With 260 ms to spare only B is sure to make it.
        guard case .sendNow(let hurried) = router.route([a, b], payloadWeight: 0, deadlineMs: 260, now: now) else {
            return #expect(Bool(false))
        }
        #expect(hurried.index == 1)
        #expect(hurried.eligible == 1)
    }

    @Test func calibrationScalesProcessing() {
        var slow = local(latency: 0)
        slow.processingCalibration = 2
        #expect(slow.predictedArrivalMs(payloadWeight: 0) == 300)
    }
}

extension TaskRouter.Decision {
    var isSend: Bool {
        if case .sendNow = self { return true }
        return false
    }
}

@Suite struct ProcessingCalibrationTests {
    @Test func completionsRecalibrateTheEstimateAfterFiveSamples() {
        var clock = ManualClock()
        var tracker = ImpedanceTracker(agentClass: .local)
        tracker.recordHeartbeat(at: clock.now, oneWayLatencyMs: 10, queueDepth: 0)
        for n in 1...5 {
            clock.advance(by: .milliseconds(500))
            // Estimated 150 ms, observed 300 ms of processing (310 total − 10 latency).
            tracker.recordCompletion(at: clock.now, totalMs: 310, predictedMs: 160, estimatedProcessingMs: 150, succeeded: true)
            #expect(tracker.processingCalibration == (n < 5 ? 1 : 2))
        }
        let impedance = tracker.impedance(at: clock.now)
        #expect(impedance.processingMs == 300)
        #expect(impedance.observedProcessingMs == 300)
        #expect(impedance.medianPredictionErrorMs == 150)
        #expect(impedance.completions == 5)
    }

    @Test func failuresFeedReliabilityOnly() {
        let clock = ManualClock()
        var tracker = ImpedanceTracker(agentClass: .local)
        tracker.recordCompletion(at: clock.now, totalMs: 9000, predictedMs: 160, estimatedProcessingMs: 150, succeeded: false)
        tracker.recordCompletion(at: clock.now, totalMs: 160, predictedMs: 160, estimatedProcessingMs: 150, succeeded: true)
        #expect(tracker.reliability(at: clock.now) == 0.5)
        #expect(tracker.processing.count == 1)
    }

    @Test func calibrationIsBounded() {
        let clock = ManualClock()
        var tracker = ImpedanceTracker(agentClass: .local)
        for _ in 0..<5 {
            tracker.recordCompletion(at: clock.now, totalMs: 15_000, predictedMs: 150, estimatedProcessingMs: 150, succeeded: true)
        }
        #expect(tracker.processingCalibration == 4)
    }
}

@Suite struct LazySampleRingTests {
    @Test func growsThenWrapsLikeAnEagerRing() {
        var lazy = SampleRing(capacity: 3, lazily: true)
        var eager = SampleRing(capacity: 3)
        #expect(lazy.mean == nil)
        for sample in [1.0, 2, 3, 4, 5] {
            lazy.add(sample)
            eager.add(sample)
            #expect(lazy.count == eager.count)
            #expect(lazy.samples.sorted() == eager.samples.sorted())
        }
        #expect(lazy.samples.sorted() == [3, 4, 5])
        #expect(lazy.percentile(50) == 4)
    }
}
