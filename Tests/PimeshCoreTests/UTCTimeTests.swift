import Testing

@testable import PimeshCore

@Suite struct UTCTimeTests {
    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00Z"), (951_782_400_000, "2000-02-29T00:00:00Z"), (1_796_181_298_000, "2026-12-02T03:14:58Z"),
        (4_107_542_399_000, "2100-02-28T23:59:59Z"), (-1000, "1969-12-31T23:59:59Z"),
    ])
    func iso8601InUTC(epochMs: Int64, expected: String) {
        #expect(UTCTime.iso8601(epochMs: epochMs) == expected)
    }

    @Test func parsedBackExactly() {
        for ms in [Int64(0), 951_782_400_123, 1_796_181_298_007, 4_107_542_399_999] {
            #expect(UTCTime.epochMs(iso8601: Substring(UTCTime.iso8601(epochMs: ms, milliseconds: true))) == ms)
            #expect(UTCTime.epochMs(iso8601: Substring(UTCTime.iso8601(epochMs: ms))) == ms / 1000 * 1000)
        }
        for bad in ["2026-12-02T03:14:58", "2026-13-02T03:14:58Z", "2026-12-02 03:14:58Z", "2026-12-02T03:14:58.12Z", "x"] {
            #expect(UTCTime.epochMs(iso8601: Substring(bad)) == nil, "\(bad)")
        }
    }

    @Test func millisecondsWhenAsked() {
        #expect(UTCTime.iso8601(epochMs: 1_796_181_298_007, milliseconds: true) == "2026-12-02T03:14:58.007Z")
    }

    @Test func everyDayOfFourHundredYearsRoundTrips() {
        // The Gregorian cycle repeats every 146,097 days; walking one cycle checks every leap rule.
        var (year, month, day): (Int64, Int64, Int64) = (1970, 1, 1)
        let monthLengths: [Int64] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        for days in Int64(0)..<146_097 {
            let civil = UTCTime.civilDate(daysSinceEpoch: days)
            #expect(civil == (year, month, day), "day \(days)")
            if civil != (year, month, day) { return }
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            let length = month == 2 && leap ? 29 : monthLengths[Int(month - 1)]
            day += 1
            if day > length { day = 1; month += 1 }
            if month > 12 { month = 1; year += 1 }
        }
    }

    @Test func agesReadLikeKubectl() {
        #expect(UTCTime.age(0) == "0s")
        #expect(UTCTime.age(-5000) == "0s")
        #expect(UTCTime.age(119_999) == "119s")
        #expect(UTCTime.age(120_000) == "2m")
        #expect(UTCTime.age(7_199_999) == "119m")
        #expect(UTCTime.age(7_200_000) == "2h")
        #expect(UTCTime.age(172_800_000) == "2d")
    }

    @Test func durationsAsSinceTakesThem() {
        #expect(UTCTime.milliseconds(ofDuration: "10m") == 600_000)
        #expect(UTCTime.milliseconds(ofDuration: "1h30m") == 5_400_000)
        #expect(UTCTime.milliseconds(ofDuration: "250ms") == 250)
        #expect(UTCTime.milliseconds(ofDuration: "2d") == 172_800_000)
        for bad in ["", "10", "m", "10x", "-5m", "1.5h", "10 m", "9999999999s"] {
            #expect(UTCTime.milliseconds(ofDuration: bad) == nil, "\(bad)")
        }
    }
}

@Suite struct IDPrefixTests {
    let ids = ["b02dd7e0-1111", "b02dd7e0-2222", "c0ffee00-3333"]

    @Test func aUniquePrefixOfFourOrMoreFindsTheId() {
        #expect(IDPrefix.resolve("c0ff", among: ids) == .unique("c0ffee00-3333"))
        #expect(IDPrefix.resolve("C0FFEE", among: ids) == .unique("c0ffee00-3333"))
        #expect(IDPrefix.resolve("b02dd7e0-2", among: ids) == .unique("b02dd7e0-2222"))
        #expect(IDPrefix.resolve("b02dd7e0-2222", among: ids) == .unique("b02dd7e0-2222"))
    }

    @Test func shortUnknownAndAmbiguousPrefixes() {
        #expect(IDPrefix.resolve("c0f", among: ids) == .none)
        #expect(IDPrefix.resolve("dead", among: ids) == .none)
        #expect(IDPrefix.resolve("b02dd7e0", among: ids) == .ambiguous(["b02dd7e0-1111", "b02dd7e0-2222"]))
    }
}

@Suite struct ClockStepDetectorTests {
    @Test func aStepIsToldOnceAndADriftIsNot() {
        var detector = ClockStepDetector()
        var clock = ManualClock(start: .seconds(50))
        var wallMs: Int64 = 1_800_000_000_000
        var report = detector.observe(wallMs: wallMs, now: clock.now)
        #expect(report == nil)
        // NTP slewing: 0.5 ms a second for an hour is no step.
        for _ in 0..<3600 {
            clock.advance(by: .seconds(1))
            wallMs += 1_000 + (wallMs % 2 == 0 ? 1 : 0)
            report = detector.observe(wallMs: wallMs, now: clock.now)
            #expect(report == nil)
        }
        clock.advance(by: .milliseconds(100))
        wallMs += 100 + 3 * 3_600_000
        report = detector.observe(wallMs: wallMs, now: clock.now)
        #expect(report == ClockStepDetector.Report(steps: 1, netMs: 10_800_000))
        #expect(report?.text == "stepped forward by 3 h")
        #expect(detector.lastStepAt == clock.now)
        clock.advance(by: .milliseconds(100))
        wallMs += 100
        report = detector.observe(wallMs: wallMs, now: clock.now)
        #expect(report == nil, "once")
    }

    /// A time source that flaps: one report a minute, not an event and an audit row a step.
    @Test func stepsAfterAReportAreToldTogetherAMinuteLater() {
        var detector = ClockStepDetector()
        var clock = ManualClock(start: .seconds(50))
        var wallMs: Int64 = 1_800_000_000_000
        var reports: [ClockStepDetector.Report] = []
        func pass(_ stepMs: Int64) {
            clock.advance(by: .milliseconds(300))
            wallMs += 300 + stepMs
            if let report = detector.observe(wallMs: wallMs, now: clock.now) { reports.append(report) }
        }
        pass(0)
        for _ in 0..<100 {
            pass(-2_000)
            pass(2_000)
        }
        #expect(reports.first == ClockStepDetector.Report(steps: 1, netMs: -2_000))
        #expect(reports.count == 1, "200 steps in 60 s: the first is told, the rest wait")
        for _ in 0..<200 { pass(0) }
        #expect(reports.count == 2)
        #expect(reports.last == ClockStepDetector.Report(steps: 199, netMs: 2_000))
        #expect(reports.last?.text == "stepped 199 times, net forward by 2 s")
        var extreme = ClockStepDetector()
        _ = extreme.observe(wallMs: 0, now: Instant(nanoseconds: 0))
        #expect(extreme.observe(wallMs: .min, now: Instant(nanoseconds: .max)) != nil, "extremes do not trap")
    }

    /// The last audit row a lead wrote against the clocks now: a step while no lead ran shows
    /// on the same boot only, where the monotonic clock went on.
    @Test func aStepWhileNoLeadRanShowsOnTheSameBootOnly() {
        let wallMs: Int64 = 1_800_000_000_000
        let later = 3_600_000 as Int64
        func step(_ nowWallMs: Int64, boot: String = "b1") -> Int64? {
            ClockStepDetector.stepSince(
                wallMs: wallMs, monoMs: 50_000, bootID: "b1", nowWallMs: nowWallMs, nowMonoMs: 50_000 + later, nowBootID: boot)
        }
        #expect(step(wallMs + later) == nil, "an hour down, no step")
        #expect(step(wallMs + later + 8 * 86_400_000) == Int64(8 * 86_400_000))
        #expect(step(wallMs + later - 7_200_000) == Int64(-7_200_000))
        #expect(step(wallMs + later + 8 * 86_400_000, boot: "b2") == nil, "another boot: the monotonic clock started again")
    }

    @Test func describesTheStepForAnOperator() {
        #expect(ClockStepDetector.describe(stepMs: 3 * 3_600_000 + 2 * 60_000 + 5_000) == "forward by 3 h 2 min 5 s")
        #expect(ClockStepDetector.describe(stepMs: -1_500) == "back by 1.5 s")
        #expect(ClockStepDetector.describe(stepMs: 3 * 3_600_000 - 1) == "forward by 3 h")
        #expect(ClockStepDetector.describe(stepMs: -8 * 86_400_000) == "back by 8 d")
        #expect(ClockStepDetector.describe(stepMs: .min).hasPrefix("back by "))
    }
}
