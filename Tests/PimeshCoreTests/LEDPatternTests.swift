import Testing

@testable import PimeshCore

@Suite struct DegradationLevelTests {
    @Test func thresholdEdges() {
        #expect(DegradationLevel(healthyRatio: 0.95, agents: 100) == .full)
        #expect(DegradationLevel(healthyRatio: 0.949, agents: 100) == .light)
        #expect(DegradationLevel(healthyRatio: 0.80, agents: 100) == .light)
        #expect(DegradationLevel(healthyRatio: 0.799, agents: 100) == .moderate)
        #expect(DegradationLevel(healthyRatio: 0.60, agents: 100) == .moderate)
        #expect(DegradationLevel(healthyRatio: 0.599, agents: 100) == .severe)
        #expect(DegradationLevel(healthyRatio: 0.30, agents: 100) == .severe)
        #expect(DegradationLevel(healthyRatio: 0.299, agents: 100) == .emergency)
        #expect(DegradationLevel(healthyRatio: 0, agents: 0) == .full)
        #expect(DegradationLevel.full < .emergency)
    }
}

@Suite struct LEDPatternTests {
    @Test func livenessPulsesOnceASecond() {
        let pulse = LEDPatterns.pattern(for: .liveness, LEDStatus(alive: true))
        let timeline = pulse.transitions(to: .milliseconds(2500))
        #expect(timeline.map(\.at) == [.zero, .milliseconds(100), .milliseconds(1000), .milliseconds(1100), .milliseconds(2000), .milliseconds(2100)])
        #expect(timeline.map(\.on) == [true, false, true, false, true, false])
    }

    @Test func aStoppedLeadShowsNothing() {
        for role in LEDRole.allCases {
            #expect(LEDPatterns.pattern(for: role, LEDStatus(alive: false, level: .emergency, alert: .sev1)) == .off)
        }
        #expect(LEDPattern.off.nextChange(after: .zero) == nil)
        #expect(LEDPattern.off.transitions(to: .seconds(5)).count == 1)
    }

    @Test func levelsBlinkFasterAsTheyWorsen() {
        #expect(LEDPatterns.level(.full) == .steady)
        #expect(LEDPattern.steady.nextChange(after: .milliseconds(10)) == nil)
        let periods = DegradationLevel.allCases.dropFirst().map { LEDPatterns.level($0).period }
        #expect(periods == [.seconds(2), .seconds(1), .milliseconds(500), .milliseconds(200)])
        #expect(periods == periods.sorted(by: >))
        let moderate = LEDPatterns.level(.moderate)
        #expect(moderate.isOn(at: .milliseconds(499)) && !moderate.isOn(at: .milliseconds(500)) && moderate.isOn(at: .milliseconds(1000)))
    }

    @Test func blinkCodesCountTheCondition() {
        for alert in LEDAlert.allCases {
            let pattern = LEDPatterns.pattern(for: .alert, LEDStatus(alive: true, alert: alert))
            let cycle = pattern.transitions(to: pattern.period)
            #expect(cycle.filter(\.on).count == alert.blinks)
            // Each blink 200 ms, 300 ms apart, then 1.5 s dark.
            #expect(pattern.period == .milliseconds(500 * alert.blinks + 1500))
        }
        let three = LEDPatterns.alert(.sev3)
        #expect(three.transitions(to: .seconds(3)).map(\.at).prefix(6) == [
            .zero, .milliseconds(200), .milliseconds(500), .milliseconds(700), .milliseconds(1000), .milliseconds(1200),
        ])
        #expect(three.nextChange(after: .milliseconds(1200)) == .milliseconds(3000))
        #expect(LEDPatterns.pattern(for: .alert, LEDStatus(alive: true)) == .off)
    }

    @Test func theMostSevereConditionWins() {
        #expect(LEDStatus.mostSevere([.sev4, .sev3, .sev2]) == .sev2)
        #expect(LEDStatus.mostSevere([]) == nil)
    }

    @Test func nextChangeWorksAcrossPeriodsAndNegativePhase() {
        let blink = LEDPattern.blink(on: .milliseconds(100), off: .milliseconds(100))
        #expect(blink.nextChange(after: .milliseconds(1050)) == .milliseconds(1100))
        #expect(blink.nextChange(after: .milliseconds(1199)) == .milliseconds(1200))
        #expect(blink.isOn(at: .milliseconds(-50)) == false)
    }
}
