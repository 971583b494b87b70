import Testing

@testable import PimeshCore

@Suite struct ArrivalSchedulerTests {
    let scheduler = ArrivalScheduler()
    let now = Instant.seconds(100)

    @Test func waitsUntilTargetMinusLeadTime() {
        let decision = scheduler.decide(targetArrival: now + .milliseconds(500), leadTimeMs: 200, now: now)
        #expect(decision == .wait(until: now + .milliseconds(300)))
    }

    @Test func sendsNowWhenLeadTimeFillsTheWindow() {
        let decision = scheduler.decide(targetArrival: now + .milliseconds(500), leadTimeMs: 500, now: now)
        #expect(decision == .sendNow(expectedArrival: now + .milliseconds(500)))
    }

    @Test func toleranceEdges() {
        // Seed: a send time in the past is SKIP, however little; exactly now is SEND_NOW;
        // up to 5 ms ahead is sent now (arrives that much early); 6 ms ahead waits.
        #expect(scheduler.decide(targetArrival: now + .milliseconds(100), leadTimeMs: 100, now: now) == .sendNow(expectedArrival: now + .milliseconds(100)))
        #expect(scheduler.decide(targetArrival: now + .milliseconds(100), leadTimeMs: 100.001, now: now) == .skip(.insufficientLeadTime(neededMs: 100.001, availableMs: 100)))
        #expect(scheduler.decide(targetArrival: now + .milliseconds(100), leadTimeMs: 95, now: now) == .sendNow(expectedArrival: now + .milliseconds(95)))
        #expect(scheduler.decide(targetArrival: now + .milliseconds(100), leadTimeMs: 94, now: now) == .wait(until: now + .milliseconds(6)))
    }

    @Test func compensationRangeIsZeroToOneSecond() {
        // Seed 001: "impedance compensation range: 0 ms to 1000 ms lead time".
        let far = now + .seconds(5)
        #expect(scheduler.decide(targetArrival: far, leadTimeMs: 1000, now: now) == .wait(until: far - .seconds(1)))
        #expect(scheduler.decide(targetArrival: far, leadTimeMs: 1000.5, now: now) == .skip(.beyondCompensationRange(neededMs: 1000.5, maximumMs: 1000)))
        #expect(scheduler.decide(targetArrival: far, leadTimeMs: -3, now: now) == .wait(until: far))
        guard case .skip(let reason) = scheduler.decide(targetArrival: far, leadTimeMs: 1500, now: now) else {
            return #expect(Bool(false))
        }
        #expect(reason.description == "beyond_compensation_range: needs 1500 ms of lead time, arrival compensation covers 1000 ms")
    }

    @Test func skipSaysWhy() {
        let decision = scheduler.decide(targetArrival: now + .milliseconds(100), leadTimeMs: 337.5, now: now)
        guard case .skip(let reason) = decision else {
            Issue.record("expected a skip, got \(decision)")
            return
        }
        #expect(reason.description == "insufficient_lead_time: needs 338 ms, 100 ms available")
    }

    @Test func leadTimeIncludesDriftBuffer() {
        var tracker = ImpedanceTracker(agentClass: .local)
        for i in 0..<10 { tracker.recordHeartbeat(at: now, oneWayLatencyMs: i % 2 == 0 ? 40 : 60, queueDepth: 0) }
        let impedance = tracker.impedance(at: now)
        // latency median 40, processing 150 → 190; drift 10/50 = 0.2 → buffer 38.
        #expect(impedance.predictedArrivalMs == 190)
        #expect(abs(impedance.drift - 0.2) < 1e-9)
        #expect(abs(impedance.leadTimeMs - 228) < 1e-9)
        #expect(abs(impedance.leadTimeMs(payloadWeight: 2) - (40 + 300) * 1.2) < 1e-9)
    }
}

@Suite struct TrinaryStateTests {
    @Test func valuesAreTheSeeds() {
        #expect(TrinaryState.ready.rawValue == 1)
        #expect(TrinaryState.transit.rawValue == 0)
        #expect(TrinaryState.conflict.rawValue == -1)
        #expect(TrinaryState(name: "conflict") == .conflict)
        #expect(TrinaryState(name: "DONE") == nil)
    }

    @Test func clusterSummaryCountsAndRatios() {
        func member(_ state: TrinaryState, arrival: Double) -> ClusterSummary.Member {
            var tracker = ImpedanceTracker(agentClass: .edge)
            tracker.recordHeartbeat(at: .seconds(1), oneWayLatencyMs: arrival - 10, queueDepth: 0)
            return .init(state: state, impedance: tracker.impedance(at: .seconds(1)))
        }
        var members = (0..<17).map { _ in member(.ready, arrival: 10) }
        members += [member(.transit, arrival: 1000), member(.transit, arrival: 1000), member(.conflict, arrival: 9000)]
        let summary = ClusterSummary(members: members)
        #expect(summary.total == 20)
        #expect(summary.ready == 17 && summary.transit == 2 && summary.conflict == 1)
        #expect(summary.readyRatio == 0.85 && summary.transitRatio == 0.1 && summary.conflictRatio == 0.05)
        #expect(summary.degraded == 1)
        // statistics.quantiles(n=20)[18] of 20 scores: (1 × the 19th + 19 × the 20th) / 20, the
        // 19th a 1 s agent (500), the 20th the 9 s one (900).
        #expect(summary.p95Score == 880)
        #expect(ClusterSummary(members: []).readyRatio == 0)
    }
}

@Suite struct NodeImpedanceTests {
    /// The node's own pipeline, its SD card and its power, each at its threshold.
    @Test func taskQueueStorageAndPowerFactors() {
        var readings = NodeReadings(cpuCount: 4)
        readings.taskQueueLatencyMs = 100
        readings.storageCommitP99Ms = 100
        #expect(NodeImpedance(readings: readings).score == 0, "at the thresholds nothing is lost")
        readings.taskQueueLatencyMs = 160
        readings.storageCommitP99Ms = 125
        let strained = NodeImpedance(readings: readings)
        #expect(strained.tasks == 0.625 && strained.storage == 0.8)
        #expect(strained.score == 500, "1000 × (1 − 0.625 × 0.8)")
        // Symptoms, not resources: at most half of the node each.
        readings.taskQueueLatencyMs = 30_000
        readings.storageCommitP99Ms = 5_000
        #expect(NodeImpedance(readings: readings).tasks == 0.5 && NodeImpedance(readings: readings).storage == 0.5)
        #expect(NodeReadings.median([30_000, 5, 7]) == 7 && NodeReadings.median([4, 1, 3, 2]) == 2 && NodeReadings.median([]) == nil)
        var power = NodeReadings(cpuCount: 4)
        power.frequencyCapped = true
        #expect(NodeImpedance(readings: power).power == 0.8)
        power.throttled = true
        #expect(NodeImpedance(readings: power).power == 0.6)
        power.underVoltage = true
        #expect(NodeImpedance(readings: power).power == 0.5)
        #expect(NodeImpedance(readings: power).score == 500)
        power = NodeReadings(cpuCount: 4)
        power.underVoltage = false
        #expect(NodeImpedance(readings: power).power == 1)
    }

    @Test func theWriteBudgetStretchesCheckpointsWhenTheLeadWritesAhead() {
        let mb: UInt64 = 1 << 20
        var budget = WriteBudget(bytesPerDay: 240 * mb)
        let start = Instant.seconds(36_000)
        budget.record(writtenBytes: 1_000 * mb, at: start)
        #expect(budget.usedLastDay(at: start) == 0, "the first reading is where counting starts")
        // 20 MB over two hours is a 240 MB/day pace: exactly the budget, no stretch.
        budget.record(writtenBytes: 1_010 * mb, at: start + .seconds(1800))
        budget.record(writtenBytes: 1_020 * mb, at: start + .seconds(3600 + 1800))
        #expect(budget.projectedPerDay(at: start + .seconds(3600 + 1800)) == 240 * mb)
        #expect(budget.checkpointStretch(at: start + .seconds(3600 + 1800)) == 1)
        // 10 MB more in that hour: a 360 MB/day pace, 1.5 × the budget.
        budget.record(writtenBytes: 1_030 * mb, at: start + .seconds(3600 + 1900))
        #expect(budget.checkpointStretch(at: start + .seconds(3600 + 1900)) == 1.5)
        // Never more than 12 ×, and a restarted counter (a new process) starts afresh.
        budget.record(writtenBytes: 9_000 * mb, at: start + .seconds(3600 + 2000))
        #expect(budget.checkpointStretch(at: start + .seconds(3600 + 2000)) == WriteBudget.maximumStretch)
        budget.record(writtenBytes: 5, at: start + .seconds(3600 + 2100))
        #expect(budget.usedLastDay(at: start + .seconds(3600 + 2100)) == 8_000 * mb)
        // A day and two hours later it has all left the window.
        #expect(budget.usedLastDay(at: start + .seconds(26 * 3600 + 3600)) == 0)
        #expect(budget.checkpointStretch(at: start + .seconds(26 * 3600 + 3600)) == 1)
        #expect(WriteBudget(bytesPerDay: 0).checkpointStretch(at: start) == 1, "0: no budget")
    }

    @Test func idleNodeScoresZero() {
        let readings = NodeReadings(cpuCount: 4, loadAverage: 0.3, cpuPressure: 0, memoryPressure: 0, ioPressure: 0,
                                    memoryTotalBytes: 4 << 30, memoryAvailableBytes: 3 << 30, temperatureCelsius: 45)
        #expect(NodeImpedance(readings: readings).score == 0)
    }

    @Test func factorsMultiply() {
        // CPU PSI 50 % halves the node; 77.5 °C is half way to the worst factor (1 − 0.5 × 0.8 = 0.6).
        let readings = NodeReadings(cpuCount: 4, cpuPressure: 50, temperatureCelsius: 77.5)
        let impedance = NodeImpedance(readings: readings)
        #expect(impedance.cpu == 0.5)
        #expect(abs(impedance.thermal - 0.6) < 1e-9)
        #expect(impedance.score == 700)
    }

    @Test func loadStandsInForMissingPressure() {
        let impedance = NodeImpedance(readings: NodeReadings(cpuCount: 2, loadAverage: 4))
        #expect(impedance.cpu == 0.5)
        #expect(NodeImpedance(readings: NodeReadings(cpuCount: 2, loadAverage: 1.5)).cpu == 1)
    }

    @Test func lowMemoryHeadroomCounts() {
        let impedance = NodeImpedance(readings: NodeReadings(cpuCount: 4, memoryTotalBytes: 1000, memoryAvailableBytes: 100))
        #expect(impedance.headroom == 0.5)
        #expect(impedance.score == 500)
    }
}
