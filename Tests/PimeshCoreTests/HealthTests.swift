import Glibc
import Testing

@testable import PimeshCore

@Suite struct PhiMathTests {
    @Test func matchesLibm() {
        for x in stride(from: -700.0, through: 700.0, by: 13.7) {
            let expected = Glibc.exp(x)
            #expect(abs(PhiMath.exp(x) - expected) <= expected * 1e-14, "exp(\(x))")
        }
        for x in [1e-300, 1e-8, 0.1, 0.5, 1, 1.5, 2, 10, 12345.678, 1e300] {
            #expect(abs(PhiMath.log10(x) - Glibc.log10(x)) <= 1e-13 * max(1, abs(Glibc.log10(x))), "log10(\(x))")
        }
        #expect(PhiMath.exp(800) == .infinity)
        #expect(PhiMath.exp(-800) == 0)
        #expect(PhiMath.ln(0) == -.infinity)
        #expect(PhiMath.ln(-1).isNaN)
    }
}

@Suite struct PhiAccrualDetectorTests {
    /// Regular 250 ms heartbeats with ±10 ms jitter, then silence.
    func trained(_ clock: inout ManualClock) -> PhiAccrualDetector {
        var detector = PhiAccrualDetector()
        for beat in 0..<200 {
            clock.advance(by: .milliseconds(250 + (beat % 2 == 0 ? 10 : -10)))
            detector.heartbeat(at: clock.now)
        }
        return detector
    }

    @Test func aDeadAgentIsSuspectedWithinOneSecond() {
        var clock = ManualClock()
        let detector = trained(&clock)
        let last = clock.now
        var suspectedAfter: Duration?
        for step in 1...200 {
            let now = last + .milliseconds(Double(step * 10))
            if detector.isSuspected(at: now) {
                suspectedAfter = now - last
                break
            }
        }
        let after = suspectedAfter?.milliseconds ?? .infinity
        // The seed's floor (3 × 250 ms) and phi 8 with σ ≥ 40 ms: 250 + 200 + 5.2 × 40 ≈ 660 ms,
        // so the floor decides: 750 ms after the last heartbeat.
        #expect(after == 750)
        #expect(!detector.isSuspected(at: last + .milliseconds(740)))
    }

    @Test func aLateHeartbeatIsNotSuspicion() {
        var clock = ManualClock()
        let detector = trained(&clock)
        #expect(detector.phi(at: clock.now + .milliseconds(250)) < 1)
        #expect(detector.phi(at: clock.now + .milliseconds(500)) < 3)
        #expect(!detector.isSuspected(at: clock.now + .milliseconds(600)))
    }

    @Test func aJitteryAgentEarnsMorePatience() {
        // A slow machine: intervals between 150 and 550 ms. The detector widens and does not
        // suspect a 900 ms gap, which it would for a regular agent.
        var clock = ManualClock()
        var jittery = PhiAccrualDetector()
        for beat in 0..<300 {
            clock.advance(by: .milliseconds(Double([150, 550, 250, 400, 180][beat % 5])))
            jittery.heartbeat(at: clock.now)
        }
        #expect(!jittery.isSuspected(at: clock.now + .milliseconds(900)))
        var regularClock = ManualClock()
        let regular = trained(&regularClock)
        #expect(regular.isSuspected(at: regularClock.now + .milliseconds(900)))
        #expect(jittery.isSuspected(at: clock.now + .milliseconds(3000)))
    }

    @Test func phiRisesWithSilenceAndIsZeroBeforeAnyHeartbeat() {
        let fresh = PhiAccrualDetector()
        #expect(fresh.phi(at: .seconds(100)) == 0)
        #expect(!fresh.isSuspected(at: .seconds(100)))
        var clock = ManualClock()
        let detector = trained(&clock)
        var previous = -1.0
        for ms in stride(from: 100, through: 1000, by: 100) {
            let value = detector.phi(at: clock.now + .milliseconds(Double(ms)))
            #expect(value >= previous)
            previous = value
        }
        #expect(previous > 8)
    }

    @Test func pauseForgetsTheSilence() {
        var clock = ManualClock()
        var detector = trained(&clock)
        detector.pause()
        #expect(!detector.isSuspected(at: clock.now + .seconds(60)))
        clock.advance(by: .seconds(60))
        detector.heartbeat(at: clock.now)
        // The 60 s gap is not learned as an interval.
        #expect(detector.meanMs < 300)
    }
}

@Suite struct ProgressWatchdogTests {
    @Test func hangAfterStagnationBeyondThreeSigma() {
        var watchdog = ProgressWatchdog()
        var clock = ManualClock()
        var progress: UInt64 = 0
        // Busy, progress moves every 500 ms.
        for _ in 0..<40 {
            clock.advance(by: .milliseconds(500))
            progress += 1
            watchdog.observe(progress: progress, busy: true, at: clock.now)
            watchdog.completed(at: clock.now)
        }
        let last = clock.now
        // σ ≈ 0: the threshold is the 2 s floor.
        #expect(watchdog.verdict(busy: true, at: last + .milliseconds(1999)) == .ok)
        guard case .hang(let stagnation, let threshold) = watchdog.verdict(busy: true, at: last + .milliseconds(2001)) else {
            Issue.record("expected HANG")
            return
        }
        #expect(threshold == 2000)
        #expect(stagnation == 2001)
        // Idle agents do not hang.
        #expect(watchdog.verdict(busy: false, at: last + .seconds(60)) == .ok)
    }

    @Test func slowProgressRaisesTheThreshold() {
        var watchdog = ProgressWatchdog()
        var clock = ManualClock()
        var progress: UInt64 = 0
        for step in 0..<60 {
            clock.advance(by: .milliseconds(step % 2 == 0 ? 2000 : 4000))
            progress += 1
            watchdog.observe(progress: progress, busy: true, at: clock.now)
            watchdog.completed(at: clock.now)
        }
        // mean ≈ 3 s, σ ≈ 1 s: 6 s is within mean + 3σ, 8 s is not.
        #expect(watchdog.verdict(busy: true, at: clock.now + .seconds(5)) == .ok)
        if case .hang = watchdog.verdict(busy: true, at: clock.now + .seconds(8)) {} else { Issue.record("expected HANG at 8 s") }
    }

    @Test func workAfterIdleStartsTheClockAgain() {
        var watchdog = ProgressWatchdog()
        watchdog.observe(progress: 1, busy: false, at: .seconds(1))
        watchdog.noteBusy(true, at: .seconds(100))
        #expect(watchdog.verdict(busy: true, at: .seconds(101)) == .ok)
        if case .hang = watchdog.verdict(busy: true, at: .seconds(103)) {} else { Issue.record("expected HANG 3 s into work") }
    }

    @Test func loopIsProgressWithoutCompletions() {
        var watchdog = ProgressWatchdog()
        var clock = ManualClock()
        var progress: UInt64 = 0
        watchdog.noteBusy(true, at: clock.now)
        for step in 1...200 {
            clock.advance(by: .milliseconds(100))
            progress += 1
            watchdog.observe(progress: progress, busy: true, at: clock.now)
            if step % 10 == 0 { watchdog.completed(at: clock.now) }
        }
        #expect(watchdog.verdict(busy: true, at: clock.now) == .ok)
        // Keeps moving, completes nothing: LOOP after the 10 s floor.
        for _ in 1...99 {
            clock.advance(by: .milliseconds(100))
            progress += 1
            watchdog.observe(progress: progress, busy: true, at: clock.now)
        }
        #expect(watchdog.verdict(busy: true, at: clock.now) == .ok)
        clock.advance(by: .milliseconds(200))
        progress += 1
        watchdog.observe(progress: progress, busy: true, at: clock.now)
        if case .loop = watchdog.verdict(busy: true, at: clock.now) {} else { Issue.record("expected LOOP") }
    }
}

@Suite struct LoopEndsTests {
    /// Heartbeats every 100 ms with a moving counter while it holds work and completes nothing,
    /// until the watchdog says LOOP.
    func looping() -> (AgentHealth, ManualClock, UInt64) {
        var health = AgentHealth()
        var clock = ManualClock(start: .seconds(100))
        var progress: UInt64 = 0
        health.heartbeat(at: clock.now, progress: progress)
        _ = health.evaluate(at: clock.now, busy: true, process: .unknown)
        for _ in 0..<120 {
            clock.advance(by: .milliseconds(100))
            progress += 1
            health.heartbeat(at: clock.now, progress: progress)
            _ = health.evaluate(at: clock.now, busy: true, process: .unknown)
        }
        return (health, clock, progress)
    }

    @Test func aLoopWhoseWorkIsGoneEndsWhenItsCounterStandsStill() {
        var (health, clock, progress) = looping()
        #expect(health.condition == .looping)
        // Its work taken away, it spins on: still LOOP, and it gets none.
        for _ in 0..<50 {
            clock.advance(by: .milliseconds(100))
            progress += 1
            health.heartbeat(at: clock.now, progress: progress)
            _ = health.evaluate(at: clock.now, busy: false, process: .unknown)
        }
        #expect(health.condition == .looping)
        // The counter stops (its owner restarted it, or the loop ended): alive after the 2 s floor.
        for _ in 0..<19 {
            clock.advance(by: .milliseconds(100))
            health.heartbeat(at: clock.now, progress: progress)
            _ = health.evaluate(at: clock.now, busy: false, process: .unknown)
        }
        #expect(health.condition == .looping)
        clock.advance(by: .milliseconds(200))
        health.heartbeat(at: clock.now, progress: progress)
        let change = health.evaluate(at: clock.now, busy: false, process: .unknown)
        #expect(change?.to == .alive)
        #expect(change?.reason.hasPrefix("holds no work and its progress stopped") == true)
    }

    /// A result the lead could not store is an answer all the same: the loop ends and the
    /// breaker learns nothing.
    @Test func anAnswerTheLeadCouldNotStoreEndsALoopWithoutAVerdict() {
        var (health, clock, _) = looping()
        #expect(health.condition == .looping)
        let breaker = health.breaker
        health.answered(at: clock.now)
        #expect(health.condition == .alive)
        #expect(health.breaker == breaker)
        clock.advance(by: .milliseconds(100))
        #expect(health.evaluate(at: clock.now, busy: true, process: .unknown)?.to == .alive)
    }
}

@Suite struct CircuitBreakerTests {
    @Test func opensAtFiftyPercentOverTheWindow() {
        var breaker = CircuitBreaker()
        let start = Instant.seconds(100)
        #expect(breaker.record(success: true, at: start) == nil)
        #expect(breaker.record(success: false, at: start + .seconds(1)) == nil)
        #expect(breaker.record(success: true, at: start + .seconds(2)) == nil)
        // 2 of 4 = 50 %: open.
        #expect(breaker.record(success: false, at: start + .seconds(3)) == .opened(failures: 2, total: 4))
        #expect(breaker.state == .open)
        #expect(!breaker.allows(at: start + .seconds(4)))
    }

    @Test func belowHalfOrTooFewCallsStaysClosed() {
        var breaker = CircuitBreaker()
        let start = Instant.seconds(100)
        // 3 failures alone: below the 4-call minimum.
        for second in 0..<3 { #expect(breaker.record(success: false, at: start + .seconds(Int64(second))) == nil) }
        var other = CircuitBreaker()
        for second in 0..<3 { other.record(success: true, at: start + .seconds(Int64(second))) }
        for second in 3..<5 { other.record(success: false, at: start + .seconds(Int64(second))) }
        // 2 of 5 = 40 %.
        #expect(other.state == .closed)
    }

    @Test func oldOutcomesLeaveTheWindow() {
        var breaker = CircuitBreaker()
        let start = Instant.seconds(100)
        for second in 0..<4 { breaker.record(success: false, at: start + .milliseconds(Double(second))) }
        #expect(breaker.state == .open)
        var slow = CircuitBreaker()
        slow.record(success: false, at: start)
        slow.record(success: false, at: start + .seconds(1))
        // 11 s later the first two failures are gone: 1 of 3 recent... then 2 successes.
        slow.record(success: true, at: start + .seconds(11))
        slow.record(success: true, at: start + .seconds(11))
        slow.record(success: false, at: start + .seconds(12))
        #expect(slow.counts(at: start + .seconds(12)) == (failures: 1, total: 3))
        #expect(slow.state == .closed)
    }

    @Test func halfOpenTrialClosesOrReopens() {
        var breaker = CircuitBreaker()
        let start = Instant.seconds(100)
        for _ in 0..<4 { breaker.record(success: false, at: start) }
        #expect(!breaker.allows(at: start + .seconds(29)))
        #expect(breaker.allows(at: start + .seconds(30)))
        breaker.dispatched(at: start + .seconds(30))
        #expect(breaker.state == .halfOpen)
        #expect(!breaker.allows(at: start + .seconds(31)))
        #expect(breaker.record(success: false, at: start + .seconds(31)) == .opened(failures: 1, total: 1))
        breaker.dispatched(at: start + .seconds(61))
        #expect(breaker.record(success: true, at: start + .seconds(62)) == .closed)
        #expect(breaker.counts(at: start + .seconds(62)) == (failures: 0, total: 0))
    }
}

@Suite struct GroupBreakerTests {
    @Test func moreThanFiveFailuresOpenIt() {
        var breaker = GroupBreaker()
        let start = Instant.seconds(1000)
        for index in 0..<5 { #expect(breaker.recordFailure(of: "a\(index)", at: start + .seconds(Int64(index))) == nil) }
        #expect(breaker.recordFailure(of: "a5", at: start + .seconds(5)) == .opened(failures: 6))
        #expect(breaker.isOpen)
    }

    /// A probe's single agent with a capability of healthy agents, flapping on purpose, kept
    /// their group's breaker open: one agent is one failure however often it fails.
    @Test func oneAgentFailingAgainAndAgainIsOneFailure() {
        var breaker = GroupBreaker()
        let start = Instant.seconds(1000)
        for index in 0..<30 { #expect(breaker.recordFailure(of: "flapper", at: start + .seconds(Int64(index))) == nil) }
        #expect(!breaker.isOpen && breaker.recentFailures == 1)
    }

    @Test func failuresOutsideTheWindowDoNotCount() {
        var breaker = GroupBreaker()
        let start = Instant.seconds(1000)
        for index in 0..<5 { breaker.recordFailure(of: "a\(index)", at: start + .seconds(Int64(index))) }
        #expect(breaker.recordFailure(of: "a5", at: start + .seconds(61)) == nil)
        #expect(!breaker.isOpen)
    }

    @Test func openThirtyHalfOpenSixtyThenClosed() {
        var breaker = GroupBreaker()
        let start = Instant.seconds(1000)
        for index in 0..<6 { breaker.recordFailure(of: "a\(index)", at: start) }
        #expect(breaker.tick(at: start + .seconds(29), probeHealthy: true) == nil)
        #expect(breaker.tick(at: start + .seconds(30), probeHealthy: false) == .extended)
        #expect(breaker.tick(at: start + .seconds(89), probeHealthy: true) == nil)
        #expect(breaker.tick(at: start + .seconds(90), probeHealthy: true) == .halfOpened)
        #expect(!breaker.isOpen)
        #expect(breaker.tick(at: start + .seconds(149), probeHealthy: true) == nil)
        #expect(breaker.tick(at: start + .seconds(150), probeHealthy: true) == .closed)
    }

    @Test func aFailureWhileHalfOpenReopens() {
        var breaker = GroupBreaker()
        let start = Instant.seconds(1000)
        for index in 0..<6 { breaker.recordFailure(of: "a\(index)", at: start) }
        _ = breaker.tick(at: start + .seconds(30), probeHealthy: true)
        #expect(breaker.recordFailure(of: "a6", at: start + .seconds(40)) == .opened(failures: 7))
    }
}

@Suite struct UnreportedFailureTests {
    /// An exit, an immediate restart and a heartbeat, all between two health ticks: the tick
    /// still reports the exit, then the return.
    @Test func anExitOverBeforeATickIsStillReported() {
        var health = AgentHealth()
        var clock = ManualClock(start: .seconds(100))
        health.started(at: clock.now, restart: false)
        health.heartbeat(at: clock.now, progress: 1)
        _ = health.evaluate(at: clock.now, busy: false, process: .running)
        clock.advance(by: .milliseconds(10))
        health.exited(at: clock.now, reason: "pid 7 killed by signal 9")
        health.started(at: clock.now, restart: true)
        clock.advance(by: .milliseconds(20))
        health.heartbeat(at: clock.now, progress: 1)
        clock.advance(by: .milliseconds(50))
        let missed = health.takeUnreportedFailure()
        #expect(missed?.from == .alive)
        #expect(missed?.to == .exited)
        #expect(missed?.reason == "pid 7 killed by signal 9")
        #expect(health.evaluate(at: clock.now, busy: false, process: .running).map { ($0.from, $0.to) } ?? (.unknown, .unknown) == (.exited, .alive))
        #expect(health.takeUnreportedFailure() == nil)
    }

    /// Seed 000: a non-zero exit or missed heartbeats fail an agent; status 0 does not.
    @Test func aCleanExitIsNotAFailure() {
        var health = AgentHealth()
        var clock = ManualClock(start: .seconds(100))
        health.started(at: clock.now, restart: false)
        health.heartbeat(at: clock.now, progress: 1)
        _ = health.evaluate(at: clock.now, busy: false, process: .running)
        clock.advance(by: .milliseconds(10))
        health.exited(at: clock.now, reason: "pid 7 exited with status 0", clean: true)
        #expect(health.condition == .left && !health.condition.isFailure)
        #expect(health.takeUnreportedFailure() == nil)
        clock.advance(by: .seconds(30))
        // The tick reports it as gone, once, and never as a failure even with a manifest.
        #expect(health.evaluate(at: clock.now, busy: false, process: .gone, expected: true)?.to == .left)
        clock.advance(by: .seconds(30))
        #expect(health.evaluate(at: clock.now, busy: false, process: .gone, expected: true) == nil)
        #expect(!health.countsForHealth(at: clock.now, expected: true))
        // Started again by an `always` policy: unknown until it heartbeats, then alive.
        health.started(at: clock.now, restart: true)
        #expect(health.condition == .unknown)
        health.heartbeat(at: clock.now, progress: 2)
        #expect(health.condition == .alive)
        // The same exit with status 1 is a failure.
        clock.advance(by: .seconds(1))
        health.exited(at: clock.now, reason: "pid 8 exited with status 1")
        #expect(health.condition == .exited && health.condition.isFailure)
    }
}

@Suite struct RecoveryTests {
    @Test func backoffDoublesAndResetsAfterAStablePeriod() {
        var backoff = RestartBackoff()
        var delays: [Double] = []
        for index in 0..<12 {
            let started = Instant.seconds(Int64(index * 100))
            delays.append(backoff.delayAfterExit(startedAt: started, exitedAt: started + .seconds(1)).milliseconds)
        }
        // The first exit restarts at once (seed 002: force restart, bypass cooldown).
        #expect(delays == [0, 100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000])
        // Ran 10 s: stable, at once again; a crash 9 s after that start is not stable.
        #expect(backoff.delayAfterExit(startedAt: .seconds(5000), exitedAt: .seconds(5010)).milliseconds == 0)
        #expect(backoff.delayAfterExit(startedAt: .seconds(6000), exitedAt: .seconds(6009)).milliseconds == 100)
    }

    @Test func restartPolicies() {
        #expect(RestartPolicy.always.restarts(cleanExit: true))
        #expect(!RestartPolicy.onFailure.restarts(cleanExit: true))
        #expect(RestartPolicy.onFailure.restarts(cleanExit: false))
        #expect(!RestartPolicy.never.restarts(cleanExit: false))
    }

    @Test func canaryRampStagesAndConditions() {
        let start = Instant.seconds(10)
        var ramp = CanaryRamp(startedAt: start)
        #expect(ramp.limit == 5)
        #expect(ramp.evaluate(at: start + .seconds(29), utilisation: 0.1, queueLatencyMs: 1, mayAdvance: true) == nil)
        // Hold over, but the node is at 85 %: no.
        #expect(ramp.evaluate(at: start + .seconds(30), utilisation: 0.85, queueLatencyMs: 1, mayAdvance: true) == nil)
        #expect(ramp.evaluate(at: start + .seconds(30), utilisation: 0.5, queueLatencyMs: 100, mayAdvance: true) == nil)
        #expect(ramp.evaluate(at: start + .seconds(30), utilisation: 0.5, queueLatencyMs: 20, mayAdvance: false) == nil)
        #expect(ramp.evaluate(at: start + .seconds(31), utilisation: 0.84, queueLatencyMs: 99, mayAdvance: true) == 1)
        #expect(ramp.limit == 25)
        #expect(ramp.evaluate(at: start + .seconds(90), utilisation: 0.1, queueLatencyMs: 1, mayAdvance: true) == nil)
        #expect(ramp.evaluate(at: start + .seconds(91), utilisation: 0.1, queueLatencyMs: 1, mayAdvance: true) == 2)
        #expect(ramp.limit == nil)
        #expect(ramp.isComplete)
    }

    @Test func hashRingIsStableAndMovesOnlyTheLeaversShare() {
        let members = (0..<10).map { "agent-\($0)" }
        let ring = ConsistentHashRing(members: members)
        let keys = (0..<5000).map { "task-\($0)" }
        let owners = keys.map { ring.owner(of: $0)! }
        #expect(owners == keys.map { ConsistentHashRing(members: members).owner(of: $0)! })
        var share: [String: Int] = [:]
        for owner in owners { share[owner, default: 0] += 1 }
        for member in members { #expect((300...700).contains(share[member] ?? 0), "\(member): \(share[member] ?? 0)") }
        let smaller = ConsistentHashRing(members: members.filter { $0 != "agent-3" })
        for (key, owner) in zip(keys, owners) where owner != "agent-3" {
            #expect(smaller.owner(of: key) == owner)
        }
        #expect(ConsistentHashRing(members: []).owner(of: "x") == nil)
        #expect(ConsistentHashRing.hash("abc") == ConsistentHashRing.hash("abc"))
    }

    @Test func workStealingAtFifteenPercent() {
        let stealing = WorkStealing()
        #expect(WorkStealing.variation([10, 10, 10]) == 0)
        #expect(stealing.plan([10, 10, 10]).isEmpty)
        // cv of [10, 12] is 1/11 ≈ 9 %: left alone.
        #expect(stealing.plan([10, 12]).isEmpty)
        // cv of [8, 12] is 20 %: move 2.
        #expect(stealing.plan([8, 12]) == [.init(from: 1, to: 0, count: 2)])
        let moves = stealing.plan([0, 20, 4, 4])
        #expect(moves.first == .init(from: 1, to: 0, count: 10))
        var queues = [0, 20, 4, 4]
        for move in moves {
            queues[move.from] -= move.count
            queues[move.to] += move.count
        }
        #expect(WorkStealing.variation(queues) <= 0.15 || moves.count == stealing.settings.maxMovesPerRound)
        #expect(stealing.plan([0, 1]).isEmpty)
        // A frozen agent (index 0) gives its queue away and takes nothing.
        #expect(stealing.plan([6, 0], canReceive: [false, true]) == [.init(from: 0, to: 1, count: 3)])
        #expect(stealing.plan([0, 6], canReceive: [false, true]).isEmpty)
        // Its last waiting item moves too (between live agents a single one stays put), and
        // it gives before live agents even out.
        #expect(stealing.plan([1, 0, 0], canReceive: [false, true, true]) == [.init(from: 0, to: 1, count: 1)])
        #expect(stealing.plan([3, 9, 0], canReceive: [false, true, true]).first == .init(from: 0, to: 2, count: 2))
    }
}

@Suite struct DegradationPolicyTests {
    @Test func levelsAtTheirEdges() {
        #expect(DegradationLevel(healthyRatio: 0.95, agents: 100) == .full)
        #expect(DegradationLevel(healthyRatio: 0.9499, agents: 100) == .light)
        #expect(DegradationLevel(healthyRatio: 0.80, agents: 100) == .light)
        #expect(DegradationLevel(healthyRatio: 0.7999, agents: 100) == .moderate)
        #expect(DegradationLevel(healthyRatio: 0.60, agents: 100) == .moderate)
        #expect(DegradationLevel(healthyRatio: 0.5999, agents: 100) == .severe)
        #expect(DegradationLevel(healthyRatio: 0.30, agents: 100) == .severe)
        #expect(DegradationLevel(healthyRatio: 0.2999, agents: 100) == .emergency)
    }

    @Test func actionsPerLevel() {
        #expect(DegradationLevel.allCases.map { DegradationPolicy(level: $0).minimumPriority } == [0, 1, 2, 3, 3])
        #expect(DegradationLevel.allCases.map { DegradationPolicy(level: $0).canariesAdvance } == [true, true, false, false, false])
        #expect(DegradationLevel.allCases.map { DegradationPolicy(level: $0).maxScatterAgents } == [nil, nil, 1000, nil, nil])
        #expect(DegradationLevel.allCases.map { DegradationPolicy(level: $0).scatterNeedsApproval } == [false, false, false, true, true])
        // Ask and broadcast at each threshold: MODERATE's 1,000 agents and priority 2, SEVERE's approval.
        let moderate = DegradationPolicy(level: .moderate)
        #expect(moderate.scatterVerdict(priority: 2, approved: false, targets: 1000) == .allowed)
        #expect(moderate.scatterVerdict(priority: 2, approved: false, targets: 1001) == .tooManyAgents(targets: 1001, limit: 1000))
        #expect(moderate.scatterVerdict(priority: 1, approved: false, targets: 10) == .shed(minimumPriority: 2))
        let severe = DegradationPolicy(level: .severe)
        #expect(severe.scatterVerdict(priority: 3, approved: false, targets: 10) == .needsApproval)
        #expect(severe.scatterVerdict(priority: 0, approved: true, targets: 5000) == .allowed, "the operator's approval covers it")
        #expect(DegradationPolicy(level: .full).scatterVerdict(priority: 0, approved: false, targets: 100_000) == .allowed)
        #expect(DegradationLevel.allCases.map { DegradationPolicy(level: $0).retryTimeoutFactor } == [1, 2, 2, 2, 2])
        #expect(DegradationLevel.allCases.map { DegradationPolicy(level: $0).preservesStateAndAlerts } == [false, false, false, false, true])
        #expect(DegradationPolicy(level: .full).restrictions.isEmpty)
        #expect(DegradationPolicy(level: .emergency).restrictions.contains { $0.contains("all automatic healing stops") })
        #expect(DegradationPolicy(level: .emergency).restrictions.contains { $0.contains("snapshot preserves the state") })
    }

    @Test func namesAreTheSeeds() {
        #expect(DegradationLevel.allCases.map(\.rawValue) == ["FULL", "DEGRADED_LIGHT", "DEGRADED_MODERATE", "DEGRADED_SEVERE", "EMERGENCY"])
    }

    /// Seed 001 §6.3: LIGHT disables background tasks, MODERATE queues non-urgent ones,
    /// SEVERE and EMERGENCY run critical operations only (the rest wait in the queue).
    @Test func taskDispositionByLevelAndPriority() {
        func row(_ level: DegradationLevel) -> [DegradationPolicy.TaskDisposition] {
            (0...3).map { DegradationPolicy(level: level).disposition(priority: $0) }
        }
        #expect(row(.full) == [.route, .route, .route, .route])
        #expect(row(.light) == [.shed, .route, .route, .route])
        #expect(row(.moderate) == [.shed, .queue, .route, .route])
        #expect(row(.severe) == [.shed, .queue, .queue, .route])
        #expect(row(.emergency) == [.shed, .queue, .queue, .route])
    }

    /// Seed 001: CONFLICT is an answer, not a failure; only silence (TRANSIT) or a failed
    /// condition makes an agent unhealthy.
    @Test func conflictIsHealthy() {
        #expect(AgentCondition.isHealthy(.alive, reporting: .ready))
        #expect(AgentCondition.isHealthy(.alive, reporting: .conflict))
        #expect(!AgentCondition.isHealthy(.alive, reporting: .transit))
        #expect(!AgentCondition.isHealthy(.suspected, reporting: .ready))
        #expect(!AgentCondition.isHealthy(.unknown, reporting: .ready))
    }

    @Test func transitAfterOneSecondOfSilence() {
        let heard = Instant.seconds(10)
        let stale = Duration.milliseconds(1000)
        #expect(TrinaryState.observed(reported: .conflict, lastHeartbeat: heard, now: heard + stale, staleAfter: stale) == .conflict)
        #expect(
            TrinaryState.observed(reported: .conflict, lastHeartbeat: heard, now: heard + stale + .nanoseconds(1), staleAfter: stale) == .transit)
        #expect(TrinaryState.observed(reported: .ready, lastHeartbeat: nil, now: heard, staleAfter: stale) == .transit)
    }

    @Test func memoryOverBudgetDegradesToAtLeastModerate() {
        #expect(DegradationPolicy.level(healthyRatio: 1, agents: 10, memoryOverBudget: true) == .moderate)
        #expect(DegradationPolicy.level(healthyRatio: 0.1, agents: 10, memoryOverBudget: true) == .emergency)
        #expect(DegradationPolicy.level(healthyRatio: 1, agents: 10, memoryOverBudget: false) == .full)
    }

    @Test func authorityTiers() {
        #expect(AuthorityTier.l0.runsAutomatically(at: .severe))
        #expect(!AuthorityTier.l0.runsAutomatically(at: .emergency))
        #expect(AuthorityTier.l1.runsAutomatically(at: .moderate))
        #expect(!AuthorityTier.l1.runsAutomatically(at: .severe))
        #expect(!AuthorityTier.l2.runsAutomatically(at: .full))
        #expect(HealingAction.restartExited.tier == .l0)
        #expect(HealingAction.runHealCommand.tier == .l1)
        #expect(HealingAction.restartGivenUp.tier == .l2)
    }

    @Test func memoryBudget() {
        let budget = MemoryBudget(budgetBytes: 100)
        let verdict = budget.evaluate([
            .init(name: "a", bytes: 40, limitBytes: 30), .init(name: "b", bytes: 50, limitBytes: nil),
            .init(name: "c", bytes: 20, limitBytes: 5),
        ])
        #expect(verdict.totalBytes == 110)
        #expect(verdict.overBudget)
        #expect(verdict.overLimit == ["c", "a"])
        #expect(!MemoryBudget(budgetBytes: nil).evaluate([.init(name: "a", bytes: 1 << 40, limitBytes: nil)]).overBudget)
    }
}

@Suite struct AgentHealthTests {
    func beating(_ health: inout AgentHealth, _ clock: inout ManualClock, count: Int = 20, progress: inout UInt64) {
        for _ in 0..<count {
            clock.advance(by: .milliseconds(250))
            progress += 1
            health.heartbeat(at: clock.now, progress: progress)
            _ = health.evaluate(at: clock.now, busy: false, process: .unknown)
        }
    }

    @Test func silenceIsSuspicionOrHangByTheProcess() {
        var clock = ManualClock(start: .seconds(1))
        var attached = AgentHealth()
        var progress: UInt64 = 0
        beating(&attached, &clock, progress: &progress)
        var supervised = attached
        clock.advance(by: .milliseconds(800))
        let change = attached.evaluate(at: clock.now, busy: false, process: .unknown)
        #expect(change?.from == .alive)
        #expect(change?.to == .suspected)
        #expect(supervised.evaluate(at: clock.now, busy: false, process: .running)?.to == .hung)
        // The next heartbeat clears it, dated at the heartbeat.
        clock.advance(by: .milliseconds(50))
        attached.heartbeat(at: clock.now, progress: progress + 1)
        clock.advance(by: .milliseconds(50))
        let back = attached.evaluate(at: clock.now, busy: false, process: .unknown)
        #expect(back?.to == .alive)
        #expect(back?.since == clock.now - .milliseconds(50))
    }

    @Test func aSuspicionGapIsNotLearnedSoTheNextFailureIsSeenAsFast() {
        var clock = ManualClock(start: .seconds(1))
        var health = AgentHealth()
        var progress: UInt64 = 0
        beating(&health, &clock, progress: &progress)
        clock.advance(by: .seconds(2))
        #expect(health.evaluate(at: clock.now, busy: false, process: .unknown)?.to == .suspected)
        beating(&health, &clock, count: 8, progress: &progress)
        #expect(health.condition == .alive)
        #expect(health.phi.meanMs < 300)
        clock.advance(by: .milliseconds(900))
        #expect(health.evaluate(at: clock.now, busy: false, process: .unknown)?.to == .suspected)
    }

    @Test func aFrozenAgentIsNeverSuspected() {
        var clock = ManualClock(start: .seconds(1))
        var health = AgentHealth()
        var progress: UInt64 = 0
        beating(&health, &clock, progress: &progress)
        health.freeze(at: clock.now)
        #expect(health.evaluate(at: clock.now, busy: false, process: .running)?.to == .frozen)
        clock.advance(by: .seconds(600))
        #expect(health.evaluate(at: clock.now, busy: true, process: .running) == nil)
        #expect(health.taskLimit(at: clock.now) == 0)
        health.thaw(at: clock.now)
        clock.advance(by: .seconds(3))
        // Still no heartbeat 3 s after the thaw: not suspected (grace applies to starts only).
        #expect(health.evaluate(at: clock.now, busy: false, process: .running)?.to == .unknown)
        health.heartbeat(at: clock.now, progress: progress + 1)
        #expect(health.evaluate(at: clock.now, busy: false, process: .running)?.to == .alive)
    }

    @Test func exitRestartAndCanary() {
        var clock = ManualClock(start: .seconds(1))
        var health = AgentHealth()
        var progress: UInt64 = 0
        beating(&health, &clock, progress: &progress)
        #expect(health.taskLimit(at: clock.now) == nil)
        health.exited(at: clock.now, reason: "killed by signal 9")
        #expect(health.evaluate(at: clock.now, busy: true, process: .gone)?.to == .exited)
        #expect(health.taskLimit(at: clock.now) == 0)
        clock.advance(by: .milliseconds(100))
        health.started(at: clock.now, restart: true)
        #expect(health.evaluate(at: clock.now, busy: false, process: .running)?.to == .unknown)
        beating(&health, &clock, count: 1, progress: &progress)
        #expect(health.condition == .alive)
        #expect(health.taskLimit(at: clock.now) == 5)
        clock.advance(by: .seconds(31))
        health.heartbeat(at: clock.now, progress: progress + 1)
        #expect(health.evaluateCanary(at: clock.now, utilisation: 0.2, queueLatencyMs: 5, mayAdvance: true) == 1)
        #expect(health.taskLimit(at: clock.now) == 25)
    }

    @Test func aStartedAgentThatNeverHeartbeatsIsHung() {
        var health = AgentHealth()
        health.started(at: .seconds(10), restart: false)
        #expect(health.evaluate(at: .seconds(14), busy: false, process: .running) == nil)
        #expect(health.evaluate(at: .seconds(16), busy: false, process: .running)?.to == .hung)
    }

    @Test func aWatchdogHangHoldsUntilProgressEvenWhenTheWorkIsTakenAway() {
        var clock = ManualClock(start: .seconds(1))
        var health = AgentHealth()
        var progress: UInt64 = 0
        beating(&health, &clock, progress: &progress)
        // Busy, heartbeating, progress frozen: HANG after the 2 s floor.
        var change: AgentHealth.Change?
        for _ in 0..<12 {
            clock.advance(by: .milliseconds(250))
            health.heartbeat(at: clock.now, progress: progress)
            if let found = health.evaluate(at: clock.now, busy: true, process: .running) { change = found }
        }
        #expect(change?.to == .hung)
        #expect(change?.reason.contains("made no progress") == true)
        // Its task migrates away: still hung, it has not shown it moved on.
        clock.advance(by: .milliseconds(250))
        health.heartbeat(at: clock.now, progress: progress)
        #expect(health.evaluate(at: clock.now, busy: false, process: .running) == nil)
        #expect(health.condition == .hung)
        health.heartbeat(at: clock.now, progress: progress + 1)
        #expect(health.evaluate(at: clock.now, busy: false, process: .running)?.to == .alive)
    }

    @Test func anOpenBreakerTakesNoWork() {
        var health = AgentHealth()
        var clock = ManualClock(start: .seconds(1))
        var progress: UInt64 = 0
        beating(&health, &clock, progress: &progress)
        for _ in 0..<4 { _ = health.completed(success: false, at: clock.now) }
        #expect(health.taskLimit(at: clock.now) == 0)
        clock.advance(by: .seconds(30))
        health.heartbeat(at: clock.now, progress: progress + 1)
        #expect(health.taskLimit(at: clock.now) == 1)
    }
}

@Suite struct RetryBackoffTests {
    @Test func doublesToTheMaximumWithJitter() {
        let backoff = RetryBackoff(initial: .seconds(1), maximum: .seconds(60), jitter: 0.2)
        #expect((1...8).map { backoff.delay(afterFailures: $0, random: 0.5).milliseconds } == [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000])
        #expect(backoff.delay(afterFailures: 1, random: 0).milliseconds == 800)
        #expect(backoff.delay(afterFailures: 1, random: 0.999_999).milliseconds.rounded() == 1200)
        #expect(backoff.delay(afterFailures: 100, random: 0.5) == .seconds(60))
    }

    @Test func leavingAndDepartingAreNotFailuresAndPendingAgentsDoNotCount() {
        var clock = ManualClock(start: .seconds(1))
        let settings = AgentHealth.Settings(pendingGrace: .seconds(2), expireAfter: .seconds(10))
        // A registration never heard: pending for the grace, and still out of the count after it
        // unless a manifest expects it.
        var ghost = AgentHealth(settings: settings)
        #expect(ghost.evaluate(at: clock.now, busy: false, process: .unknown) == nil)
        #expect(ghost.isPending(at: clock.now, expected: false) && !ghost.countsForHealth(at: clock.now, expected: false))
        clock.advance(by: .seconds(3))
        #expect(ghost.isPending(at: clock.now, expected: false))
        #expect(!ghost.isPending(at: clock.now, expected: true) && ghost.countsForHealth(at: clock.now, expected: true))
        clock.advance(by: .seconds(8))
        #expect(ghost.evaluate(at: clock.now, busy: false, process: .unknown)?.to == .departed)
        #expect(!ghost.countsForHealth(at: clock.now, expected: false) && !AgentCondition.departed.isFailure)
        ghost.heartbeat(at: clock.now, progress: 1)
        #expect(ghost.condition == .alive)

        // Heard, then silent: suspected, and it counts; a goodbye's stragglers do not revive it.
        var known = AgentHealth(settings: settings)
        known.heartbeat(at: clock.now, progress: 1)
        #expect(known.countsForHealth(at: clock.now, expected: false))
        known.leave(at: clock.now)
        clock.advance(by: .milliseconds(100))
        known.heartbeat(at: clock.now, progress: 2)
        #expect(known.condition == .left)
        clock.advance(by: .seconds(3))
        known.heartbeat(at: clock.now, progress: 3)
        #expect(known.condition == .alive)

        // An agent with a manifest never departs; one that said goodbye is left, not suspected.
        var expected = AgentHealth(settings: settings)
        _ = expected.evaluate(at: clock.now, busy: false, process: .unknown, expected: true)
        clock.advance(by: .seconds(60))
        #expect(expected.evaluate(at: clock.now, busy: false, process: .unknown, expected: true) == nil)
        var leaving = AgentHealth(settings: settings)
        leaving.heartbeat(at: clock.now, progress: 1)
        leaving.leave(at: clock.now)
        clock.advance(by: .seconds(30))
        #expect(leaving.evaluate(at: clock.now, busy: false, process: .unknown)?.to == .left)
        #expect(!leaving.countsForHealth(at: clock.now, expected: false) && !AgentCondition.left.isFailure)

        // Stopped by an operator: its exit, its last datagrams and any silence change nothing,
        // even with a manifest; a start makes it unknown until it heartbeats.
        var stopped = AgentHealth(settings: settings)
        stopped.heartbeat(at: clock.now, progress: 1)
        stopped.stop(at: clock.now, reason: "stopped by operator")
        stopped.exited(at: clock.now, reason: "pid 7 exited 0")
        stopped.heartbeat(at: clock.now, progress: 2)
        clock.advance(by: .seconds(60))
        #expect(stopped.evaluate(at: clock.now, busy: false, process: .gone, expected: true)?.to == .stopped)
        #expect(stopped.condition == .stopped && !AgentCondition.stopped.isFailure)
        #expect(!stopped.countsForHealth(at: clock.now, expected: true))
        stopped.started(at: clock.now, restart: true)
        #expect(stopped.condition == .unknown)
        stopped.heartbeat(at: clock.now, progress: 3)
        #expect(stopped.condition == .alive)
    }

    @Test func parkedStepsAreJudgedAgain() {
        #expect(HealingAction.restartExited.rejudge(at: .emergency, running: false, alive: false, overMemoryLimit: false) == .wait)
        #expect(HealingAction.restartExited.rejudge(at: .severe, running: false, alive: false, overMemoryLimit: false) == .carryOut)
        #expect(HealingAction.restartExited.rejudge(at: .emergency, running: true, alive: false, overMemoryLimit: false) == .drop)
        #expect(HealingAction.restartUnresponsive.rejudge(at: .severe, running: true, alive: true, overMemoryLimit: false) == .drop)
        #expect(HealingAction.restartUnresponsive.rejudge(at: .severe, running: true, alive: false, overMemoryLimit: false) == .wait)
        #expect(HealingAction.restartUnresponsive.rejudge(at: .moderate, running: true, alive: false, overMemoryLimit: false) == .carryOut)
        #expect(HealingAction.restartOverMemory.rejudge(at: .severe, running: true, alive: true, overMemoryLimit: false) == .drop)
        #expect(HealingAction.restartGivenUp.rejudge(at: .full, running: false, alive: false, overMemoryLimit: false) == .wait)
    }
}

/// Seed 000 ModelLivenessProbe ("latency > 5000 ms OR HTTP 503") and FlowControlGate
/// ("pending_requests > max_concurrency" holds the agent), at their thresholds.
@Suite struct SeedZeroGateTests {
    @Test func notLiveIsAnAnswerOver5000MsOr503OrNoAnswer() {
        let timeout = Duration.milliseconds(5000)
        #expect(LivenessProbe.judge(status: 200, latency: .milliseconds(5000), error: nil, timeout: timeout) == .live)
        #expect(LivenessProbe.judge(status: 200, latency: .microseconds(5_000_001), error: nil, timeout: timeout) != .live)
        #expect(LivenessProbe.judge(status: 503, latency: .milliseconds(3), error: nil, timeout: timeout) == .notLive("HTTP 503"))
        #expect(LivenessProbe.judge(status: 500, latency: .milliseconds(3), error: nil, timeout: timeout) == .live, "alive, if unwell")
        #expect(LivenessProbe.judge(status: nil, latency: .milliseconds(3), error: "connection refused", timeout: timeout)
            == .notLive("no answer: connection refused"))
    }

    @Test func oneProbeAtATimeEveryIntervalAndNotLiveAfterTheConsecutiveFailures() {
        let start = Instant.seconds(50)
        var probe = LivenessProbe(settings: .init(every: .seconds(10), failures: 2), processSince: start - .seconds(60))
        var started = probe.start(at: start)
        #expect(started)
        started = probe.start(at: start + .seconds(20))
        #expect(!started, "the first is still in flight")
        var verdict = probe.finish(.notLive("HTTP 503"), at: start)
        #expect(verdict == .live, "one failure of two")
        started = probe.start(at: start + .milliseconds(9999))
        #expect(!started)
        started = probe.start(at: start + .seconds(10))
        #expect(started)
        verdict = probe.finish(.notLive("HTTP 503"), at: start + .seconds(10))
        #expect(verdict == .notLive("HTTP 503"))
        started = probe.start(at: start + .seconds(20))
        #expect(started)
        verdict = probe.finish(.live, at: start + .seconds(20))
        #expect(verdict == .live && probe.consecutiveFailures == 0)
    }

    /// A process heartbeats before its HTTP server listens: failures count once it answered
    /// live, or after the start grace (30 s), never before.
    @Test func aFreshProcessIsNotJudgedBeforeItAnsweredOrItsGraceEnded() {
        let start = Instant.seconds(500)
        var probe = LivenessProbe(settings: .init(every: .seconds(1)), processSince: start)
        var verdict = probe.finish(.notLive("no answer: connection refused"), at: start + .milliseconds(29_999))
        #expect(verdict == .live && probe.consecutiveFailures == 0)
        verdict = probe.finish(.notLive("no answer: connection refused"), at: start + .seconds(30))
        #expect(verdict == .notLive("no answer: connection refused"), "the grace is over")
        var answered = LivenessProbe(settings: .init(every: .seconds(1)), processSince: start)
        _ = answered.finish(.live, at: start + .seconds(1))
        verdict = answered.finish(.notLive("HTTP 503"), at: start + .seconds(2))
        #expect(verdict == .notLive("HTTP 503"), "it answered once: from then on it is judged")
    }

    @Test func aFailingProbeHoldsAHeartbeatingAgentHungUntilItAnswersOrRestarts() {
        var health = AgentHealth()
        var clock = ManualClock(start: .seconds(100))
        health.started(at: clock.now, restart: false)
        health.heartbeat(at: clock.now, progress: 1)
        _ = health.evaluate(at: clock.now, busy: false, process: .running)
        health.livenessProbe(.notLive("HTTP 503"), at: clock.now)
        #expect(health.condition == .hung)
        #expect(health.evaluate(at: clock.now, busy: false, process: .running)?.reason == "liveness probe: HTTP 503")
        // Heartbeats keep coming: still hung while the probe fails.
        for _ in 0..<5 {
            clock.advance(by: .milliseconds(100))
            health.heartbeat(at: clock.now, progress: 1)
        }
        #expect(health.condition == .hung)
        health.livenessProbe(.live, at: clock.now)
        #expect(health.condition == .alive)
        // A restart forgets the old verdict: the new process is judged afresh.
        health.livenessProbe(.notLive("no answer: connection refused"), at: clock.now)
        health.exited(at: clock.now, reason: "pid 9 killed by signal 15", requested: true)
        health.started(at: clock.now, restart: true)
        health.heartbeat(at: clock.now, progress: 1)
        #expect(health.condition == .alive && health.probeFailure == nil)
    }

    @Test func maxConcurrencyCapsTheTaskLimitWithTheCanary() {
        var health = AgentHealth()
        let now = Instant.seconds(100)
        health.started(at: now, restart: false)
        health.heartbeat(at: now, progress: 1)
        #expect(health.taskLimit(at: now) == nil)
        health.maxConcurrency = 3
        #expect(health.taskLimit(at: now) == 3)
        // An agent with 3 out is held; with 2 it takes one more.
        #expect(RouteCandidate.Availability(quarantined: false, condition: .alive, state: .ready, outstanding: 3, taskLimit: 3) == .limited)
        #expect(RouteCandidate.Availability(quarantined: false, condition: .alive, state: .ready, outstanding: 2, taskLimit: 3) == .available)
        // After a restart the canary's first stage (5) is above it: the gate still holds at 3.
        health.started(at: now, restart: true)
        health.heartbeat(at: now, progress: 2)
        #expect(health.taskLimit(at: now) == 3)
        health.maxConcurrency = 10
        #expect(health.taskLimit(at: now) == 5, "the canary's stage is the lower")
    }
}

@Suite struct TierResponseTimeTests {
    /// Seed 000's SLAs: L0 100 ms, L1 1,000 ms, L2 10,000 ms, each inclusive.
    @Test func eachStepIsJudgedAgainstItsTiersSLA() {
        var times = TierResponseTimes()
        times.record(.l0, tookMs: 100)
        times.record(.l0, tookMs: 100.001)
        times.record(.l1, tookMs: 1000)
        times.record(.l2, tookMs: 10_001)
        times.record(.l2, tookMs: -3)
        let byTier = Dictionary(uniqueKeysWithValues: times.summaries.map { ($0.tier, $0) })
        #expect(byTier[.l0]?.steps == 2 && byTier[.l0]?.withinSLA == 1)
        #expect(byTier[.l0]?.worstMs == 100.001)
        #expect(byTier[.l1]?.steps == 1 && byTier[.l1]?.withinSLA == 1)
        #expect(byTier[.l2]?.steps == 2 && byTier[.l2]?.withinSLA == 1, "a clock step backwards counts as 0 ms")
        #expect(TierResponseTimes().summaries.allSatisfy { $0.steps == 0 && $0.p95Ms == nil })
    }
}

@Suite struct UnresponsiveHealingTests {
    let since = Instant.seconds(100)
    let after = Duration.seconds(2)

    @Test func healedAfterTheDelayWhenTheTierAllowsElseParked() {
        func decide(_ condition: AgentCondition, at now: Instant, supervised: Bool = true, level: DegradationLevel = .full) -> UnresponsiveHealing {
            UnresponsiveHealing.decide(condition: condition, since: since, now: now, after: after, supervised: supervised, level: level)
        }
        #expect(decide(.hung, at: since + .milliseconds(1999)) == .notYet)
        #expect(decide(.hung, at: since + after) == .heal(.restartUnresponsive, due: since + after, reason: "hung for 2000 ms"))
        #expect(decide(.suspected, at: since + after, supervised: false) == .heal(.runHealCommand, due: since + after, reason: "suspected for 2000 ms"))
        #expect(decide(.alive, at: since + after) == .notYet, "it answered meanwhile")
        #expect(decide(.exited, at: since + after) == .notYet, "exits are the restart policy's")
        // L1: automatic up to DEGRADED_MODERATE, parked from DEGRADED_SEVERE on.
        #expect(decide(.looping, at: since + after, level: .moderate) == .heal(.restartUnresponsive, due: since + after, reason: "looping for 2000 ms"))
        #expect(decide(.looping, at: since + after, level: .severe)
            == .awaitOperator(.restartUnresponsive, reason: "looping for 2000 ms; the node is DEGRADED_SEVERE"))
    }
}
