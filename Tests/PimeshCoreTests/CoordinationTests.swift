import Testing

@testable import PimeshCore

@Suite struct TrinaryQuorumTests {
    let quorum = TrinaryQuorum()

    @Test func readyThresholdEdge() {
        // 95 of 100 READY with 5 silent: proceed; 94 ready and 6 in transit: RETRY (transit ≤ 10 %).
        let reached = quorum.check(ready: 95, conflict: 0, transit: 5)
        #expect(reached.decision == .proceed)
        #expect(reached.confidence == 0.95)
        #expect(quorum.check(ready: 94, conflict: 0, transit: 6).decision == .retry)
    }

    @Test func conflictThresholdEdge() {
        // 5 % conflicts are tolerated next to 95 % ready; the confidence pays half of them.
        let tolerated = quorum.check(ready: 95, conflict: 5, transit: 0)
        #expect(tolerated.decision == .proceed)
        #expect(abs(tolerated.confidence - 0.925) < 1e-12)
        // 6 % conflicts: RESOLVE_CONFLICTS, even with 94 % ready.
        let refused = quorum.check(ready: 94, conflict: 6, transit: 0)
        #expect(refused.decision == .resolveConflicts)
        #expect(refused.reason == "conflict rate 6.0 % exceeds 5.0 %")
    }

    @Test func enoughReadyButTooManyConflicts() {
        // 1000 answers: 960 ready (≥ 95 %) and 40 conflicts (4 %) proceed; 951/49 (4.9 %) too; 
        // 190 of 200 ready with 10 conflicts is exactly 5 %: proceed.
        #expect(quorum.check(ready: 190, conflict: 10, transit: 0).decision == .proceed)
        #expect(quorum.check(ready: 189, conflict: 11, transit: 0).decision == .resolveConflicts)
    }

    @Test func transitThresholdEdge() {
        // 10 % in transit is acceptable (RETRY when short of ready), 11 % is WAIT.
        #expect(quorum.check(ready: 90, conflict: 0, transit: 10).decision == .retry)
        #expect(quorum.check(ready: 89, conflict: 0, transit: 11).decision == .wait)
    }

    @Test func waitComesBeforeResolveConflicts() {
        // The seed checks transit before conflicts.
        #expect(quorum.check(ready: 50, conflict: 20, transit: 30).decision == .wait)
        #expect(quorum.check(ready: 70, conflict: 20, transit: 10).decision == .resolveConflicts)
    }

    @Test func nobodyAskedIsRetry() {
        let result = quorum.check(ready: 0, conflict: 0, transit: 0)
        #expect(result.decision == .retry)
        #expect(result.reason == "no agent was asked")
    }
}

@Suite struct ScatterGatherTests {
    let gather = ScatterGather()
    let now = Instant.seconds(10)

    @Test func plansSendTimesInTenMillisecondBuckets() {
        // Window 500 ms: target = now + 500. Lead times 100, 104, 350, 500, 520, 600 ms.
        let plan = gather.plan(leadTimesMs: [100, 104, 350, 500, 520, 600], now: now)
        #expect(plan.targetArrival == now + .milliseconds(500))
        #expect(plan.arrivalDeadline == now + .milliseconds(1000))
        #expect(plan.closesAt == now + .milliseconds(1000))
        // 100 → send at +400; 104 → +396 rounds down into the +390 bucket; 350 → +150;
        // 500 and 505 (within the 5 ms tolerance) → now; 600 → skip.
        #expect(
            plan.buckets == [
                .init(sendAt: now, indices: [3]),
                .init(sendAt: now + .milliseconds(150), indices: [2]),
                .init(sendAt: now + .milliseconds(390), indices: [1]),
                .init(sendAt: now + .milliseconds(400), indices: [0]),
            ])
        #expect(plan.skipped.map(\.index) == [4, 5])
        #expect(plan.sentCount == 4)
        #expect(plan.predictedArrival[1] == now + .milliseconds(494))
        #expect(plan.predictedArrival[3] == now + .milliseconds(500))
    }

    @Test func timeoutCapsTheGather() {
        let short = ScatterGather(settings: .init(arrivalWindow: .seconds(4), timeout: .seconds(5)))
        let plan = short.plan(leadTimesMs: [10], now: now)
        #expect(plan.arrivalDeadline == now + .seconds(8))
        #expect(plan.closesAt == now + .seconds(5))
    }

    @Test func anAgentWhoseSendTimeComesAfterTheCloseIsSkippedNotWaitedFor() {
        // A long window with a 50 ms timeout once held the caller for the whole send plan.
        let short = ScatterGather(settings: .init(arrivalWindow: .seconds(1), timeout: .milliseconds(50)))
        let plan = short.plan(leadTimesMs: [10, 990], now: now)
        #expect(plan.closesAt == now + .milliseconds(50))
        #expect(plan.skipped.map(\.index) == [0])
        #expect(plan.skipped.first?.reason == .closesBeforeSend(sendInMs: 990, closesInMs: 50))
        #expect(plan.buckets.flatMap(\.indices) == [1])
        #expect(plan.buckets.allSatisfy { $0.sendAt < plan.closesAt })
    }

    @Test func silentAgentsCountAsTransit() {
        // 100 sent, 95 READY, 5 never answered: response ratio 0.95, quorum reached.
        let outcome = gather.judge(.init(sent: 100, ready: 95))
        #expect(outcome.gatherSucceeded)
        #expect(outcome.responseRatio == 0.95)
        #expect(outcome.quorum.transit == 5)
        #expect(outcome.quorum.decision == .proceed)
        // Late answers do not count: 94 in time and 6 stragglers is PARTIAL and RETRY.
        let late = gather.judge(.init(sent: 100, ready: 94, late: 6))
        #expect(!late.gatherSucceeded)
        #expect(late.quorum.decision == .retry)
    }
}

@Suite struct ConflictPolicyTests {
    let policy = ConflictPolicy()

    @Test func prioritiesFollowTheSeed() {
        #expect(policy.classify(.init(type: .temporalParadox)).priority == 4)
        #expect(policy.classify(.init(type: .hashMismatch)).priority == 4)
        #expect(policy.classify(.init(type: .contextDivergence, divergenceDepth: 10)).priority == 2)
        #expect(policy.classify(.init(type: .contextDivergence, divergenceDepth: 11)).priority == 3)
        #expect(policy.classify(.init(type: .dataContradiction, affectedAgents: 100)).priority == 2)
        #expect(policy.classify(.init(type: .dataContradiction, affectedAgents: 101)).priority == 3)
        #expect(policy.classify(.init(type: .other)).priority == 2)
        #expect(policy.classify(.init(type: .capabilityMismatch)).priority == 1)
    }

    @Test func onlyCriticalConflictsQuarantine() {
        #expect(policy.classify(.init(type: .hashMismatch)).quarantinesAgent)
        #expect(policy.classify(.init(type: .temporalParadox)).strategy == "CLOCK_RECONCILIATION")
        #expect(!policy.classify(.init(type: .contextDivergence, divergenceDepth: 50)).quarantinesAgent)
        #expect(policy.classify(.init(type: .contextDivergence, divergenceDepth: 50)).escalates)
        #expect(!policy.classify(.init(type: .capabilityMismatch)).escalates)
    }

    /// Seed 001 `classify_conflict_priority`: 0 when convenient, 1 within an hour, 2 within
    /// 10 minutes, 3 within 1 minute, 4 immediate; ≥ 3 to the sector coordinator, ≥ 4 to the
    /// orchestrator too.
    @Test func resolutionDeadlinesAndEscalationByPriority() {
        #expect((0...4).map { ConflictPolicy.resolveWithin(priority: $0) } == [nil, .seconds(3600), .seconds(600), .seconds(60), .zero])
        #expect((0...4).map { ConflictEscalation(priority: $0) } == [.none, .none, .none, .sectorCoordinator, .orchestrator])
        #expect(policy.classify(.init(type: .capabilityMismatch)).resolveWithin == .seconds(3600))
        #expect(policy.classify(.init(type: .hashMismatch)).escalation == .orchestrator)
        // At the edges: overdue only once the deadline has passed; "immediate" from the start.
        #expect(!ConflictPolicy.isOverdue(priority: 1, ageMs: 3_600_000))
        #expect(ConflictPolicy.isOverdue(priority: 1, ageMs: 3_600_001))
        #expect(!ConflictPolicy.isOverdue(priority: 2, ageMs: 600_000))
        #expect(ConflictPolicy.isOverdue(priority: 2, ageMs: 600_001))
        #expect(ConflictPolicy.isOverdue(priority: 3, ageMs: 60_001))
        #expect(ConflictPolicy.isOverdue(priority: 4, ageMs: 0))
        #expect(!ConflictPolicy.isOverdue(priority: 0, ageMs: .max))
    }

    @Test func theTimedConflictsAreBoundedAndKeepTheCriticalOnes() {
        // The lead's bound is 256: one critical conflict, then 256 minor ones.
        var tracked = [4]
        for _ in 0..<256 {
            tracked.append(1)
            if let index = ConflictPolicy.untrackedIndex(priorities: tracked, maxTracked: 256) { tracked.remove(at: index) }
        }
        #expect(tracked.count == 256)
        #expect(tracked.first == 4)
        #expect(ConflictPolicy.untrackedIndex(priorities: [2, 3, 2], maxTracked: 3) == nil)
        #expect(ConflictPolicy.untrackedIndex(priorities: [3, 2, 4, 2], maxTracked: 3) == 1)
    }

    @Test func unresolvedConflictsOpenIncidentsAtTheirDeadlinesAndEscalate() {
        let triggers = IncidentTriggers()
        func fired(_ conflicts: [UnresolvedConflict]) -> [IncidentTrigger] {
            var observation = IncidentObservation(agents: [])
            observation.unresolvedConflicts = conflicts
            return triggers.evaluate(observation, at: .seconds(1)).filter { $0.kind == .conflict }
        }
        // Priority 2 inside its 10 minutes: nothing; past them: SEV3 naming how to resolve it.
        #expect(fired([UnresolvedConflict(seq: 7, agent: "a", priority: 2, type: "OTHER", ageMs: 600_000)]).isEmpty)
        let overdue = fired([UnresolvedConflict(seq: 7, agent: "a", priority: 2, type: "OTHER", ageMs: 600_001)])
        #expect(overdue.map(\.cause) == ["conflict_overdue:a"])
        #expect(overdue.first?.severity == .sev3)
        #expect(overdue.first?.summary.contains("pimesh conflicts resolve 7") == true)
        #expect(fired([UnresolvedConflict(seq: 8, agent: "b", priority: 1, type: "CAPABILITY_MISMATCH", ageMs: 3_600_001)]).first?.severity == .sev4)
        // Priority 3 and 4 escalate at once, one incident per agent at the worst severity.
        let escalated = fired([
            UnresolvedConflict(seq: 9, agent: "c", priority: 3, type: "CONTEXT_DIVERGENCE", ageMs: 0),
            UnresolvedConflict(seq: 10, agent: "c", priority: 4, type: "HASH_MISMATCH", ageMs: 0),
            UnresolvedConflict(seq: 11, agent: "d", priority: 3, type: "DATA_CONTRADICTION", ageMs: 0),
        ])
        #expect(escalated.map(\.cause) == ["conflict_escalated:c", "conflict_escalated:d"])
        #expect(escalated.map(\.severity) == [.sev1, .sev2])
        #expect(escalated.first?.summary.contains("orchestrator") == true)
    }

    @Test func typesAreListedMostUrgentFirst() {
        let priorities = ConflictType.allCases.map { policy.classify(.init(type: $0)).priority }
        #expect(priorities == priorities.sorted(by: >))
        #expect(ConflictType.allCases.first == .temporalParadox)
        #expect(ConflictType.allCases.last == .capabilityMismatch)
    }
}

@Suite struct CoordinationKPITests {
    let start = Instant.seconds(1_000_000)

    func byName(_ kpis: CoordinationKPIs, at now: Instant) -> [String: CoordinationKPIs.Indicator] {
        Dictionary(uniqueKeysWithValues: kpis.indicators(at: now).map { ($0.name, $0) })
    }

    @Test func indicatorsAgainstTheirTargets() {
        var kpis = CoordinationKPIs()
        #expect(kpis.indicators(at: start).allSatisfy { $0.value == nil && $0.met == nil })
        // 10 answers: 9 within 50 ms of the prediction (one at exactly 50), one 51 ms late.
        for error in [0.0, 10, -20, 50, -50, 5, 1, 2, 3, 51] {
            kpis.recordArrival(actualMs: 200 + error, predictedMs: 200, inWindow: error <= 50, state: .ready, at: start)
        }
        kpis.recordArrival(actualMs: 100, predictedMs: 100, inWindow: true, state: .conflict, at: start)
        kpis.recordOperation(achievedQuorum: true, durationMs: 600, at: start)
        kpis.recordOperation(achievedQuorum: false, durationMs: 1200, at: start)
        let found = byName(kpis, at: start)
        #expect(found["impedance_prediction_accuracy"]?.value == 10.0 / 11)
        #expect(found["impedance_prediction_accuracy"]?.met == true)
        #expect(found["arrival_window_hit_rate"]?.value == 10.0 / 11)
        #expect(found["arrival_window_hit_rate"]?.met == false)
        #expect(found["conflict_rate"]?.value == 1.0 / 11)
        #expect(found["conflict_rate"]?.met == false)
        #expect(found["coordination_success_rate"]?.value == 0.5)
        // quantiles([600, 1200], n=20)[18] in Python: 1200 + 0.85 × 600.
        #expect(found["cascade_latency_p95"]?.value == 1710)
        #expect(found["cascade_latency_p95"]?.met == false)
    }

    @Test func eachKPIIsJudgedOverTheSeedsWindowAndTheOthersAreShown() {
        var kpis = CoordinationKPIs()
        kpis.recordOperation(achievedQuorum: false, durationMs: 100, at: start)
        for minute in 1...99 {
            kpis.recordOperation(achievedQuorum: true, durationMs: 100, at: start + .seconds(Int64(minute) * 60))
        }
        // At start + 99 min the failed operation is older than an hour: the hour sees 60 of 60
        // (buckets are whole minutes, so the hour is the last 60 of them), the day all 100.
        let later = start + .seconds(99 * 60)
        let success = byName(kpis, at: later)["coordination_success_rate"]!
        #expect(success.window == .hour)
        #expect(success.value == 1 && success.samples == 60)
        #expect(success.windows.map(\.window) == [.hour, .day, .month])
        #expect(success.windows[1].value == 0.99 && success.windows[1].samples == 100)
        #expect(success.windows[2].samples == 100)
        // Two days later the day forgets them all; the month still has them.
        let nextDay = start + .seconds(2 * 86_400)
        let dayLater = byName(kpis, at: nextDay)["coordination_success_rate"]!
        #expect(dayLater.value == nil && dayLater.windows[1].value == nil)
        #expect(dayLater.windows[2].samples == 100)
        #expect(byName(kpis, at: start + .seconds(31 * 86_400))["coordination_success_rate"]!.windows[2].value == nil)
        #expect(byName(kpis, at: later)["impedance_prediction_accuracy"]?.window == .day)
        #expect(byName(kpis, at: later)["mesh_availability"]?.window == .month)
    }

    @Test func theSeedsP95IsPythonsExclusiveQuantile() {
        // statistics.quantiles(range(1, 101), n=20)[18] == 95.95;
        // quantiles([1, 2, 3, 4, 5], n=20)[18] == 5.7 (extrapolated past the largest).
        #expect(CoordinationKPIs.seedP95((1...100).map(Double.init)) == 95.95)
        #expect(CoordinationKPIs.seedP95([5, 3, 1, 4, 2]) == 5.7)
        #expect(CoordinationKPIs.seedP95([42]) == 42)
        #expect(CoordinationKPIs.seedP95([]) == nil)
    }

    @Test func meshAvailabilityIsTheShareOfWatchedTimeWithAtLeast95PercentActive() {
        var kpis = CoordinationKPIs()
        var now = start
        // 999 s at 95 % active (exactly the line: available), then 1 s at 94 %.
        kpis.recordActiveShare(0.95, at: now)
        for _ in 0..<999 {
            now = now + .seconds(1)
            kpis.recordActiveShare(0.95, at: now)
        }
        #expect(byName(kpis, at: now)["mesh_availability"]?.value == 1)
        kpis.recordActiveShare(0.94, at: now)
        now = now + .seconds(1)
        kpis.recordActiveShare(1, at: now)
        let availability = byName(kpis, at: now)["mesh_availability"]!
        #expect(availability.value == 0.999, "999 of 1,000 watched seconds")
        #expect(availability.met == true)
        #expect(availability.samples == 1000)
        // One more unavailable second: 999 of 1,001 is below 99.9 %.
        kpis.recordActiveShare(0.5, at: now)
        now = now + .seconds(1)
        kpis.recordActiveShare(1, at: now)
        #expect(byName(kpis, at: now)["mesh_availability"]?.met == false)
        // A gap longer than 10 s (the lead was stopped) is not watched time, for or against.
        let before = byName(kpis, at: now)["mesh_availability"]!
        now = now + .seconds(11)
        kpis.recordActiveShare(1, at: now)
        #expect(byName(kpis, at: now)["mesh_availability"]?.samples == before.samples)
        // No agents to count: nothing is watched.
        kpis.recordActiveShare(nil, at: now)
        kpis.recordActiveShare(nil, at: now + .seconds(1))
        #expect(byName(kpis, at: now + .seconds(1))["mesh_availability"]?.samples == before.samples)
        #expect(byName(kpis, at: now)["mesh_availability"]?.warnsOnMiss == false)
    }

    @Test func recoveryTimeRunsFromTheFallBelow95PercentToTheFirstTickBack() {
        var kpis = CoordinationKPIs()
        #expect(byName(kpis, at: start)["recovery_time"]?.value == nil)
        kpis.recordActiveShare(1, at: start)
        kpis.recordActiveShare(0.9, at: start + .seconds(1))
        // Still down at 5 min: the outage so far is the value, exactly at the target.
        let fiveMinutes = start + .seconds(301)
        #expect(byName(kpis, at: fiveMinutes)["recovery_time"]?.value == 300_000)
        #expect(byName(kpis, at: fiveMinutes)["recovery_time"]?.met == true)
        #expect(byName(kpis, at: fiveMinutes + .milliseconds(1))["recovery_time"]?.met == false)
        kpis.recordActiveShare(0.96, at: start + .seconds(121))
        let recovered = byName(kpis, at: start + .seconds(200))["recovery_time"]!
        #expect(recovered.value == 120_000 && recovered.samples == 1 && recovered.met == true)
        #expect(kpis.outageSince == nil)
        // The worst recovery in the window is the value.
        kpis.recordActiveShare(0.2, at: start + .seconds(1000))
        kpis.recordActiveShare(1, at: start + .seconds(1000 + 301))
        let worst = byName(kpis, at: start + .seconds(2000))["recovery_time"]!
        #expect(worst.value == 301_000 && worst.samples == 2 && worst.met == false)
        // An outage whose agents were all removed ends without a recovery.
        kpis.recordActiveShare(0.1, at: start + .seconds(3000))
        kpis.recordActiveShare(nil, at: start + .seconds(3001))
        #expect(kpis.outageSince == nil)
        #expect(byName(kpis, at: start + .seconds(3600))["recovery_time"]?.samples == 2)
    }

    @Test func anAskAnswerIsInTheWindowFromTheTargetLessTheToleranceToTheDeadline() {
        let plan = ScatterGather().plan(leadTimesMs: [100], now: start)
        let tolerance = Duration.milliseconds(50)
        // Target = start + 500 ms, deadline = target + 500 ms.
        #expect(plan.isInArrivalWindow(start + .milliseconds(450), tolerance: tolerance))
        #expect(!plan.isInArrivalWindow(start + .milliseconds(449), tolerance: tolerance), "early is not in the window")
        #expect(plan.isInArrivalWindow(start + .milliseconds(1000), tolerance: tolerance))
        #expect(!plan.isInArrivalWindow(start + .milliseconds(1001), tolerance: tolerance))
        let kpis = CoordinationKPIs()
        #expect(kpis.taskArrivedInWindow(actualMs: 250, leadTimeMs: 200))
        #expect(!kpis.taskArrivedInWindow(actualMs: 250.5, leadTimeMs: 200))
    }
}
