import Testing

@testable import PimeshCore

/// The bounds of issue 13 item 4, with a manual clock: the registration rate and what task
/// retention keeps.
@Suite struct LimitsTests {
    let start = Instant.seconds(1_000)

    @Test func theBucketLetsABurstThroughThenOnePerIntervalAndSaysHowLongToWait() {
        var bucket = TokenBucket(ratePerSecond: 5, burst: 5)
        for _ in 0..<5 { #expect(bucket.take(at: start) == nil) }
        #expect(bucket.take(at: start) == .milliseconds(200))
        // A fifth of a second brings exactly one token back, and no more.
        #expect(bucket.take(at: start + .milliseconds(200)) == nil)
        #expect(bucket.take(at: start + .milliseconds(200)) == .milliseconds(200))
        // A long quiet time refills only up to the burst.
        let later = start + .seconds(60)
        for _ in 0..<5 { #expect(bucket.take(at: later) == nil) }
        #expect(bucket.take(at: later) != nil)
        // A clock that goes back never mints tokens.
        #expect(bucket.take(at: start) != nil)
    }

    let retention = TaskRetention(maxAgeMs: 60_000, maxFinished: 3, maxBytes: 10_000)

    func rows(_ ages: [Int64], bytes: Int = 1000, now: Int64) -> [(finishedAtMs: Int64, bytes: Int)] {
        ages.map { (now - $0, bytes) }
    }

    @Test func finishedTasksGoWhenTooOldOrTooMany() {
        let now: Int64 = 10_000_000
        // Within every bound: nothing goes.
        #expect(retention.prunable(oldest: rows([500, 400], now: now), finishedCount: 2, storedBytes: 2000, nowMs: now) == 0)
        // One past the age (strictly older than 60 s), one at it: only the first goes.
        #expect(retention.prunable(oldest: rows([60_001, 60_000, 10], now: now), finishedCount: 3, storedBytes: 3000, nowMs: now) == 1)
        // Five finished with room for three: the two oldest go.
        #expect(retention.prunable(oldest: rows([50, 40, 30, 20, 10], now: now), finishedCount: 5, storedBytes: 5000, nowMs: now) == 2)
    }

    @Test func overTheBudgetPruningGoesDownToTheLowWaterMark() {
        let now: Int64 = 10_000_000
        let oldest = rows([9, 8, 7, 6, 5, 4, 3, 2, 1], bytes: 1000, now: now)
        let roomy = TaskRetention(maxAgeMs: 60_000, maxFinished: 100, maxBytes: 10_000)
        // 12,000 stored against 10,000: down to 9,000 (90 %) takes three rows.
        #expect(roomy.prunable(oldest: oldest, finishedCount: 9, storedBytes: 12_000, nowMs: now) == 3)
        // Under the budget nothing goes, unless a submission needs room.
        #expect(roomy.prunable(oldest: oldest, finishedCount: 9, storedBytes: 9_500, nowMs: now) == 0)
        #expect(roomy.prunable(oldest: oldest, finishedCount: 9, storedBytes: 9_500, nowMs: now, makeRoom: true) == 1)
        // Open tasks are not in `oldest`: when they alone fill the budget, nothing can go.
        #expect(roomy.prunable(oldest: [], finishedCount: 0, storedBytes: 20_000, nowMs: now, makeRoom: true) == 0)
        #expect(!roomy.admits(bytes: 1, storedBytes: 10_000))
        #expect(roomy.admits(bytes: 1000, storedBytes: 9_000))
    }

    @Test func aRowCountsItsTextsAndItsOverhead() {
        #expect(TaskRetention.storedBytes(textByteCounts: []) == TaskRetention.rowOverheadBytes)
        #expect(TaskRetention.storedBytes(textByteCounts: [10, 20]) == TaskRetention.rowOverheadBytes + 30)
    }
}

@Suite struct RetentionTimeTests {
    /// The lead started at fake-hwclock's time; NTP then stepped the clock eight days forward.
    /// Retention's "now" stays with the monotonic clock: nothing is deleted for the step.
    @Test func aStepForwardDeletesNothingEarlyAndAStepBackKeepsLonger() {
        let start: Int64 = 1_800_000_000_000
        let eightDays: Int64 = 8 * 86_400_000
        let forward = RetentionTime.nowMs(wallNowMs: start + 60_000 + eightDays, wallAtStartMs: start, sinceStart: .seconds(60))
        #expect(forward == start + 60_000)
        let retention = TaskRetention(maxAgeMs: 7 * 86_400_000, maxFinished: 10_000, maxBytes: 64 << 20)
        let finishedJustBefore = [(finishedAtMs: start + 30_000, bytes: 300)]
        #expect(retention.prunable(oldest: finishedJustBefore, finishedCount: 1, storedBytes: 300, nowMs: forward) == 0)
        // Stepped back: the wall clock, the earlier of the two.
        #expect(RetentionTime.nowMs(wallNowMs: start - 3_600_000, wallAtStartMs: start, sinceStart: .seconds(60)) == start - 3_600_000)
        // An ordinary day: both agree.
        #expect(RetentionTime.nowMs(wallNowMs: start + 86_400_000, wallAtStartMs: start, sinceStart: .seconds(86_400)) == start + 86_400_000)
        #expect(RetentionTime.nowMs(wallNowMs: .max, wallAtStartMs: .max, sinceStart: .seconds(1)) == .max, "saturates")
    }

    /// A lead started after the clock stepped eight days forward while it was down starts its
    /// retention clock at the newest row it holds, not at the stepped wall clock.
    @Test func aLeadStartedAfterAStepStartsAtItsNewestRow() {
        let newest: Int64 = 1_800_000_000_000
        #expect(RetentionTime.startMs(wallAtStartMs: newest + 8 * 86_400_000, newestStoredMs: newest) == newest)
        #expect(RetentionTime.startMs(wallAtStartMs: newest - 3_600_000, newestStoredMs: newest) == newest - 3_600_000)
        #expect(RetentionTime.startMs(wallAtStartMs: newest, newestStoredMs: nil) == newest)
    }
}

/// The coordinator's rule for an upload that arrives over time (16 KiB/s past 120 s here).
@Suite struct UploadPaceTests {
    /// A fresh pace, and a way to ask it about `received` bytes `second`s after the start.
    func pace() -> (Int64, UInt64) -> Bool {
        let start = Instant.seconds(1000)
        var pace = UploadPace(startedAt: start, grace: .seconds(120), slowestBytesPerSecond: 16_384)
        return { second, received in pace.admits(received: received, at: start + .seconds(second)) }
    }

    @Test func anythingGoesWithinTheGraceAndASteadyLinkPasses() {
        let admits = pace()
        #expect(admits(119, 1))
        let steady = pace()
        for second in stride(from: Int64(1), through: 900, by: 7) {
            #expect(steady(second, UInt64(second) * 20_000), "20 kB/s at \(second) s")
        }
    }

    @Test func aLinkSlowerOnAverageThanTheFloorIsEnded() {
        let admits = pace()
        #expect(admits(130, 16_384 * 10))
        #expect(!admits(131, 16_384 * 10), "10 s past the grace, 10 s worth and no more")
    }

    /// Most of a body at once, then a byte now and then: the average would hold its slot for
    /// days; each minute past the grace must bring the floor's rate too.
    @Test func aBurstThenATrickleIsEndedWithinAWindow() {
        let admits = pace()
        let burst: UInt64 = 1 << 30
        #expect(admits(1, burst))
        #expect(admits(125, burst + 1))
        #expect(admits(150, burst + 2))
        #expect(!admits(185, burst + 3), "a window of 60 s brought 2 bytes")
    }
}
