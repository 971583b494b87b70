import Testing

@testable import PimeshCore

/// The pace of the rows the lead writes by itself, with a manual clock. A probe's agent that
/// flapped (four heartbeats, 1.3 s of silence, again) wrote 145 rows in 30 s; twenty of them
/// about 1.3 GB a day, kept for 90 days.
@Suite struct AuditPaceTests {
    let start = Instant.seconds(1_000)

    func settings() -> AuditPace.Settings {
        var settings = AuditPace.Settings()
        settings.perSubjectBurst = 10
        settings.perSubjectPerMinute = 6
        settings.totalBurst = 30
        settings.totalPerMinute = 60
        return settings
    }

    @Test func aSubjectWritesItsBurstThenOneEveryTenSecondsAndTheRestIsCounted() {
        var pace = AuditPace(settings: settings())
        let admitted = (0..<25).filter { _ in pace.admit(subject: "flapper", at: start) }
        #expect(admitted.count == 10)
        // Another subject is not held back by the first.
        let r1 = pace.admit(subject: "steady", at: start)
        #expect(r1)
        let r2 = pace.admit(subject: "flapper", at: start + .seconds(9))
        #expect(!r2)
        let r3 = pace.admit(subject: "flapper", at: start + .seconds(11))
        #expect(r3)
        // Nothing is said before a minute has passed since the first row was held back …
        let r4 = pace.summary(at: start + .seconds(59))
        #expect(r4 == nil)
        // … then once, with the count, and not again until more is held back.
        let summary = pace.summary(at: start + .seconds(60))
        #expect(summary == AuditPace.Summary(rows: 16, subjects: 1, top: [AuditPace.Subject(subject: "flapper", rows: 16)]))
        let r5 = pace.summary(at: start + .seconds(200))
        #expect(r5 == nil)
    }

    @Test func everySubjectTogetherStaysUnderTheTotal() {
        var pace = AuditPace(settings: settings())
        // 100 subjects, 2 rows each, at once: the total's burst of 30 and no more.
        var admitted = 0
        for index in 0..<100 {
            for _ in 0..<2 where pace.admit(subject: "agent\(index)", at: start) { admitted += 1 }
        }
        #expect(admitted == 30)
        // One a second after that, whoever asks.
        let r6 = pace.admit(subject: "agent99", at: start + .seconds(1))
        #expect(r6)
        let r7 = pace.admit(subject: "agent98", at: start + .seconds(1))
        #expect(!r7)
        // 202 asked, 31 written; the 85 subjects that wrote nothing are named by the most held back.
        let summary = pace.summary(at: start + .seconds(61))
        #expect(summary?.rows == 171)
        #expect(summary?.subjects == 85)
        #expect(summary?.top.count == 8)
        #expect(summary?.top.first == AuditPace.Subject(subject: "agent98", rows: 3))
    }

    @Test func theSubjectsItRemembersAreBoundedAndAFullTableStartsOver() {
        var bounded = settings()
        bounded.maxSubjects = 4
        bounded.totalBurst = 10_000
        var pace = AuditPace(settings: bounded)
        let spent = (0..<12).filter { _ in pace.admit(subject: "s0", at: start) }.count
        #expect(spent == bounded.perSubjectBurst)
        for index in 1..<4 { let admitted = pace.admit(subject: "s\(index)", at: start); #expect(admitted) }
        #expect(pace.rememberedSubjects == 4)
        // A fifth subject: the table starts over, and s0 with it; the total still bounds them all.
        let fifth = pace.admit(subject: "s4", at: start)
        #expect(fifth && pace.rememberedSubjects == 1)
        let again = pace.admit(subject: "s0", at: start)
        #expect(again && pace.rememberedSubjects == 2)
    }

    /// Only what agents drive by heartbeating or not; the lead's actions are evidence of what
    /// it did, and are never held back.
    @Test func onlyAgentsConditionChangesArePaced() {
        for kind in ["alive", "suspected", "exited", "hung", "looping", "unknown", "degradation", "alert", "group_breaker", "recurred"] {
            #expect(AuditPace.paces(kind: kind), "\(kind)")
        }
        for kind in ["restarted", "start_failed", "heal_command_finished", "clock_stepped", "manifest_refused", "opened", "resolved", "escalated"] {
            #expect(!AuditPace.paces(kind: kind), "\(kind)")
        }
    }

    @Test func aFlushSaysWhatWasHeldBackAtOnce() {
        var pace = AuditPace(settings: settings())
        for _ in 0..<12 { _ = pace.admit(subject: "flapper", at: start) }
        let r10 = pace.summary(at: start + .seconds(1))
        #expect(r10 == nil)
        #expect(pace.summary(at: start + .seconds(1), now: true)?.rows == 2)
        let r11 = pace.summary(at: start + .seconds(1), now: true)
        #expect(r11 == nil)
    }
}
