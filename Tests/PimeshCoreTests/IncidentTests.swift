import Testing

@testable import PimeshCore

/// The incident rules of docs/incidents.md at both sides of every threshold, on a manual clock.
@Suite struct IncidentTriggerTests {
    let triggers = IncidentTriggers()
    let start = Instant.seconds(10_000)

    func agents(_ count: Int, unhealthy: Int, down: Int = 0) -> [IncidentObservation.Agent] {
        (0..<count).map { i in
            IncidentObservation.Agent(name: "a\(i)", capabilities: ["cap\(i % 4)"], down: i < down, healthy: i >= unhealthy)
        }
    }

    func causes(_ observation: IncidentObservation, at now: Instant? = nil) -> [String: IncidentTrigger] {
        Dictionary(triggers.evaluate(observation, at: now ?? start).map { ($0.cause, $0) }, uniquingKeysWith: { first, _ in first })
    }

    @Test func moreThanAQuarterOfAgentsUnhealthyIsSEV2WithAMinimumSample() {
        #expect(causes(IncidentObservation(agents: agents(1000, unhealthy: 249)))["agents_unhealthy"] == nil)
        #expect(causes(IncidentObservation(agents: agents(1000, unhealthy: 250)))["agents_unhealthy"] == nil, "25.0 % is not more than 25 %")
        #expect(causes(IncidentObservation(agents: agents(1000, unhealthy: 251)))["agents_unhealthy"]?.severity == .sev2)
        // 9 agents are fewer than the minimum sample, however many are unhealthy.
        #expect(causes(IncidentObservation(agents: agents(9, unhealthy: 9)))["agents_unhealthy"] == nil)
        #expect(causes(IncidentObservation(agents: agents(10, unhealthy: 3)))["agents_unhealthy"]?.severity == .sev2)
    }

    @Test func oneAgentDownIsSEV3AndSEV2WhenCriticalTwoCriticalAreSEV1() {
        var observed = agents(10, unhealthy: 1, down: 1)
        #expect(causes(IncidentObservation(agents: observed))["agent_down:a0"]?.severity == .sev3)
        observed[0].critical = true
        #expect(causes(IncidentObservation(agents: observed))["agent_down:a0"]?.severity == .sev2)
        #expect(causes(IncidentObservation(agents: observed))["critical_agents_down"] == nil)
        observed[1].critical = true
        observed[1].down = true
        let both = causes(IncidentObservation(agents: observed))
        #expect(both["critical_agents_down"]?.severity == .sev1)
        #expect(both["critical_agents_down"]?.agents == ["a0", "a1"])
        // a0 restarted and is not heartbeating yet while its incident is open: with a1 down, still
        // two out in one window. Once a0 is healthy, or with nobody down, the rule is quiet.
        observed[0].down = false
        var recovering = IncidentObservation(agents: observed)
        #expect(causes(recovering)["critical_agents_down"] == nil, "a0 is not held by an incident")
        recovering.stillOut = ["a0"]
        #expect(causes(recovering)["critical_agents_down"]?.agents == ["a0", "a1"])
        observed[1].down = false
        recovering.agents = observed
        #expect(causes(recovering)["critical_agents_down"] == nil, "nobody is down any more")
    }

    @Test func underVoltageIsSEV2AndThrottlingAloneSEV3() {
        var observation = IncidentObservation(agents: agents(10, unhealthy: 0))
        #expect(causes(observation).keys.allSatisfy { !$0.hasPrefix("power:") })
        observation.throttled = true
        #expect(causes(observation)["power:throttled"]?.severity == .sev3)
        observation.underVoltage = true
        #expect(causes(observation)["power:under_voltage"]?.severity == .sev2)
        #expect(causes(observation)["power:throttled"] == nil, "the supply explains the throttling")
    }

    @Test func aCapabilityWithNoLiveAgentIsSEV1() {
        let observed = [
            IncidentObservation.Agent(name: "x", capabilities: ["ocr"], down: true, healthy: false),
            IncidentObservation.Agent(name: "y", capabilities: ["ocr", "tts"], down: true, healthy: false),
            IncidentObservation.Agent(name: "z", capabilities: ["tts"], down: false, healthy: true),
        ]
        let found = causes(IncidentObservation(agents: observed))
        #expect(found["capability_uncovered:ocr"]?.severity == .sev1)
        #expect(found["capability_uncovered:ocr"]?.agents == ["x", "y"])
        #expect(found["capability_uncovered:tts"] == nil)
    }

    func outcomes(succeeded: Int, failed: Int, capabilities: [String] = ["ocr"], at now: Instant? = nil) -> TaskOutcomeWindow {
        var window = TaskOutcomeWindow()
        for i in 0..<(succeeded + failed) {
            window.record(
                capability: capabilities[i % capabilities.count], agent: "a\(i % 7)", succeeded: i >= failed, error: "timeout", at: now ?? start)
        }
        return window
    }

    @Test func taskSuccessBelow99IsSEV3AndBelow95IsSEV1() {
        func severity(_ failed: Int, of total: Int) -> Severity? {
            causes(IncidentObservation(agents: [], outcomes: outcomes(succeeded: total - failed, failed: failed)))["task_failures"]?.severity
        }
        #expect(severity(10, of: 1000) == nil, "99.0 % is not below 99 %")
        #expect(severity(11, of: 1000) == .sev3)
        #expect(severity(50, of: 1000) == .sev3, "95.0 % is not below 95 %")
        #expect(severity(51, of: 1000) == .sev1)
        // The minimum sample: nine outcomes, all failed, say nothing.
        #expect(severity(9, of: 9) == nil)
        #expect(severity(10, of: 10) == .sev1)
        // Error budget burning: 0.75 % failing is the early warning, 0.74 % is not.
        let warning = causes(IncidentObservation(agents: [], outcomes: outcomes(succeeded: 9925, failed: 75)))
        #expect(warning["early_warning:error_budget"]?.severity == .sev4)
        #expect(causes(IncidentObservation(agents: [], outcomes: outcomes(succeeded: 9926, failed: 74)))["early_warning:error_budget"] == nil)
    }

    @Test func outcomesLeaveTheRatiosAfterFiveMinutes() {
        let window = outcomes(succeeded: 0, failed: 20)
        #expect(causes(IncidentObservation(agents: [], outcomes: window), at: start + .seconds(289))["task_failures"] != nil)
        #expect(causes(IncidentObservation(agents: [], outcomes: window), at: start + .seconds(301))["task_failures"] == nil)
    }

    @Test func fiveFailuresWithinAnHourAcrossCapabilitiesIsAMassFailure() {
        var window = TaskOutcomeWindow()
        window.record(capability: "ocr", agent: "a", succeeded: false, error: "connection refused", at: start)
        for i in 1...3 {
            window.record(capability: i % 2 == 0 ? "ocr" : "tts", agent: "b", succeeded: false, error: nil, at: start + .seconds(Int64(i * 60)))
        }
        let late = start + .seconds(600)
        #expect(causes(IncidentObservation(agents: [], outcomes: window), at: late)["mass_failure"] == nil, "4 failures")
        window.record(capability: "tts", agent: "c", succeeded: false, error: nil, at: late)
        #expect(causes(IncidentObservation(agents: [], outcomes: window), at: late)["mass_failure"]?.severity == .sev1)
        // The first failure leaves the hour at 60:00; at 59:59 it still counts, at 60:01 not.
        #expect(causes(IncidentObservation(agents: [], outcomes: window), at: start + .seconds(3599))["mass_failure"] != nil)
        #expect(causes(IncidentObservation(agents: [], outcomes: window), at: start + .seconds(3601))["mass_failure"] == nil)
        // Five failures of one capability are not a mass failure.
        var single = TaskOutcomeWindow()
        for i in 0..<5 { single.record(capability: "ocr", agent: "a", succeeded: false, error: nil, at: start + .seconds(Int64(i))) }
        #expect(causes(IncidentObservation(agents: [], outcomes: single), at: start + .seconds(5))["mass_failure"] == nil)
    }

    @Test func threeGroupsAboveHalfFailingIsAMassFailure() {
        var settings = IncidentTriggers.Settings()
        settings.massFailureCount = 1000  // only the group rule
        let rules = IncidentTriggers(settings: settings)
        var window = TaskOutcomeWindow()
        for capability in ["a", "b", "c"] {
            for i in 0..<20 { window.record(capability: capability, agent: capability, succeeded: i >= 11, error: nil, at: start) }
        }
        let three = rules.evaluate(IncidentObservation(agents: [], outcomes: window), at: start).first { $0.cause == "mass_failure" }
        #expect(three?.capabilities == ["a", "b", "c"])
        #expect(three?.sustain == .seconds(300))
        var two = TaskOutcomeWindow()
        for capability in ["a", "b", "c"] {
            // c fails exactly half: not above 50 %.
            for i in 0..<20 { two.record(capability: capability, agent: capability, succeeded: i >= (capability == "c" ? 10 : 11), error: nil, at: start) }
        }
        #expect(rules.evaluate(IncidentObservation(agents: [], outcomes: two), at: start).allSatisfy { $0.cause != "mass_failure" })
    }

    @Test func ramAtThreeQuartersOfItsBudgetIsAnEarlyWarning() {
        #expect(causes(IncidentObservation(agents: [], agentsMemoryBytes: 750, ramBudgetBytes: 1000))["early_warning:ram"]?.severity == .sev4)
        #expect(causes(IncidentObservation(agents: [], agentsMemoryBytes: 749, ramBudgetBytes: 1000))["early_warning:ram"] == nil)
        #expect(causes(IncidentObservation(agents: [], agentsMemoryBytes: 1000, ramBudgetBytes: 1000))["ram_over_budget"] == nil)
        #expect(causes(IncidentObservation(agents: [], agentsMemoryBytes: 1001, ramBudgetBytes: 1000))["ram_over_budget"]?.severity == .sev2)
    }

    @Test func degradationAndIntegrity() {
        #expect(causes(IncidentObservation(agents: agents(10, unhealthy: 0), degradation: .moderate))["degradation"]?.severity == .sev3)
        #expect(causes(IncidentObservation(agents: agents(10, unhealthy: 0), degradation: .full))["degradation"] == nil)
        // Fewer agents than the minimum sample: one restart moves the ratio, not the node.
        #expect(causes(IncidentObservation(agents: agents(9, unhealthy: 0), degradation: .emergency))["degradation"] == nil)
        #expect(causes(IncidentObservation(agents: [], integrityFailures: [("store", "disk I/O error")]))["integrity:store"]?.severity == .sev1)
    }

    @Test func errorPatterns() {
        #expect(ErrorPattern.classify("upstream timed out after 30s") == .timeout)
        #expect(ErrorPattern.classify("HTTP 429 Too Many Requests") == .rateLimit)
        #expect(ErrorPattern.classify("validation failed: field x") == .validation)
        #expect(ErrorPattern.classify("connect: Connection refused") == .connectionRefused)
        #expect(ErrorPattern.classify("authentication failed") == .authentication)
        #expect(ErrorPattern.classify("segfault") == .other)
    }
}

@Suite struct IncidentBookTests {
    var clock = ManualClock(start: .seconds(1_000))
    var wallMs: Int64 = 1_800_000_000_000

    mutating func advance(_ duration: Duration) {
        clock.advance(by: duration)
        wallMs += Int64(duration.milliseconds)
    }

    func down(_ name: String, critical: Bool = false) -> IncidentTrigger {
        IncidentTrigger(
            cause: "agent_down:\(name)", kind: .agentDown, severity: critical ? .sev2 : .sev3, summary: "agent \(name) is down", agents: [name])
    }

    @Test mutating func oneAgentDownOpensMitigatesAndResolvesAfterTheWindow() throws {
        var settings = IncidentBook.Settings()
        settings.observationWindow = .seconds(60)
        var book = IncidentBook(settings: settings)
        let opened = book.observe([down("a")], at: clock.now, wallMs: wallMs)
        #expect(opened.map(\.entry.kind) == ["opened"])
        let incident = try #require(book.incidents.first)
        #expect(incident.severity == .sev3)
        #expect(incident.name == "INC-000001")
        // Still down: nothing new.
        advance(.milliseconds(100))
        #expect(book.observe([down("a")], at: clock.now, wallMs: wallMs).isEmpty)
        _ = book.noteAction(agent: "a", kind: "restarted", detail: "pid 42", wallMs: wallMs)
        advance(.milliseconds(100))
        #expect(book.observe([], at: clock.now, wallMs: wallMs).map(\.entry.kind) == ["mitigated"])
        #expect(book.incidents.first?.firstResponseMs == incident.openedMs + 100)
        #expect(book.incidents.first?.mitigatedMs == incident.openedMs + 200)
        advance(.seconds(59))
        #expect(book.tick(at: clock.now, wallMs: wallMs).isEmpty)
        advance(.seconds(1))
        let resolved = book.tick(at: clock.now, wallMs: wallMs)
        #expect(resolved.map(\.entry.kind) == ["resolved"])
        #expect(resolved.first?.incident.state == .resolved)
        #expect(book.incidents.isEmpty)
    }

    @Test mutating func anAgentThatRestartsIsMitigatedOnlyOnceItIsHealthyAndDegradationJoinsItsIncident() {
        var book = IncidentBook()
        let degraded = IncidentTrigger(cause: "degradation", kind: .degradation, severity: .sev4, summary: "LIGHT", agents: ["a"])
        _ = book.observe([down("a"), degraded], at: clock.now, wallMs: wallMs)
        #expect(book.incidents.count == 1)
        #expect(book.incidents.first?.severity == .sev3)
        #expect(Set(book.incidents.first?.causes ?? []) == ["agent_down:a", "degradation"])
        advance(.milliseconds(100))
        // Restarted, not heartbeating yet: neither down nor healthy.
        #expect(book.observe([], recovering: ["a"], at: clock.now, wallMs: wallMs).isEmpty)
        advance(.milliseconds(100))
        #expect(book.observe([], recovering: ["b"], at: clock.now, wallMs: wallMs).map(\.entry.kind) == ["mitigated"])
    }

    @Test mutating func aRecurrenceReopensTheSameIncidentAndRestartsTheWindow() {
        var settings = IncidentBook.Settings()
        settings.observationWindow = .seconds(60)
        var book = IncidentBook(settings: settings)
        _ = book.observe([down("a")], at: clock.now, wallMs: wallMs)
        advance(.seconds(1))
        _ = book.observe([], at: clock.now, wallMs: wallMs)
        advance(.seconds(50))
        #expect(book.observe([down("a")], at: clock.now, wallMs: wallMs).map(\.entry.kind) == ["recurred"])
        advance(.seconds(1))
        _ = book.observe([], at: clock.now, wallMs: wallMs)
        advance(.seconds(59))
        #expect(book.tick(at: clock.now, wallMs: wallMs).isEmpty)
        #expect(book.incidents.first?.recurrences == 1)
        #expect(book.incidents.count == 1)
        advance(.seconds(1))
        #expect(book.tick(at: clock.now, wallMs: wallMs).map(\.entry.kind) == ["resolved"])
    }

    @Test mutating func failingTasksHoldResolutionBack() {
        var settings = IncidentBook.Settings()
        settings.observationWindow = .seconds(60)
        var book = IncidentBook(settings: settings)
        _ = book.observe([down("a")], at: clock.now, wallMs: wallMs)
        advance(.seconds(1))
        let failing = IncidentTrigger(cause: "task_failures", kind: .taskFailures, severity: .sev3, summary: "98 %")
        _ = book.observe([failing], at: clock.now, wallMs: wallMs)
        advance(.seconds(61))
        _ = book.tick(at: clock.now, wallMs: wallMs)
        #expect(book.incidents.contains { $0.causes == ["agent_down:a"] }, "success below target restarts the window")
        _ = book.observe([], at: clock.now, wallMs: wallMs)
        advance(.seconds(60))
        let resolved = book.tick(at: clock.now, wallMs: wallMs).filter { $0.entry.kind == "resolved" }
        #expect(resolved.count == 2)
    }

    @Test mutating func triggersNamingTheSameAgentsJoinOneIncidentAndSeverityOnlyRises() throws {
        var book = IncidentBook()
        _ = book.observe([down("a", critical: true)], at: clock.now, wallMs: wallMs)
        advance(.milliseconds(50))
        let critical = IncidentTrigger(
            cause: "critical_agents_down", kind: .criticalAgentsDown, severity: .sev1, summary: "2 critical agents are down", agents: ["a", "b"])
        let changes = book.observe([down("a", critical: true), down("b", critical: true), critical], at: clock.now, wallMs: wallMs)
        #expect(book.incidents.count == 1)
        let incident = try #require(book.incidents.first)
        #expect(incident.severity == .sev1)
        #expect(incident.kind == .criticalAgentsDown)
        #expect(Set(incident.causes) == ["agent_down:a", "agent_down:b", "critical_agents_down"])
        #expect(changes.contains { $0.entry.kind == "severity" && $0.entry.detail.hasPrefix("SEV2 → SEV1") })
        // A lesser trigger of the same cause never lowers it; an operator may.
        advance(.milliseconds(50))
        _ = book.observe([down("a", critical: true)], at: clock.now, wallMs: wallMs)
        #expect(book.incidents.first?.severity == .sev1)
        let lowered = try book.setSeverity(incident.id, to: .sev3, by: "operator (uid 0)", at: clock.now, wallMs: wallMs)
        #expect(lowered.incident.severity == .sev3)
        #expect(lowered.entry.actor == "operator (uid 0)")
        // The causes the operator judged keep firing: the severity stays where the operator put it.
        _ = book.observe([down("a", critical: true), critical], at: clock.now, wallMs: wallMs)
        #expect(book.incidents.first?.severity == .sev3)
    }

    @Test mutating func aSustainedCauseOpensOnlyAfterItsSustain() {
        var book = IncidentBook()
        let mass = IncidentTrigger(cause: "mass_failure", kind: .massFailure, severity: .sev1, summary: "mass", sustain: .seconds(300))
        _ = book.observe([mass], at: clock.now, wallMs: wallMs)
        advance(.milliseconds(299_999))
        #expect(book.observe([mass], at: clock.now, wallMs: wallMs).isEmpty)
        advance(.milliseconds(1))
        #expect(book.observe([mass], at: clock.now, wallMs: wallMs).map(\.entry.kind) == ["opened"])
        // A gap restarts the sustain.
        var other = IncidentBook()
        _ = other.observe([mass], at: clock.now, wallMs: wallMs)
        advance(.seconds(200))
        _ = other.observe([], at: clock.now, wallMs: wallMs)
        _ = other.observe([mass], at: clock.now, wallMs: wallMs)
        advance(.seconds(200))
        #expect(other.observe([mass], at: clock.now, wallMs: wallMs).isEmpty)
    }

    @Test mutating func sloTimersBreachJustAfterTheirTarget() throws {
        var book = IncidentBook()
        _ = book.observe([down("a")], at: clock.now, wallMs: wallMs)
        advance(.seconds(60))
        #expect(book.tick(at: clock.now, wallMs: wallMs).isEmpty, "60 s is within the 60 s mitigation target")
        advance(.milliseconds(1))
        let breach = book.tick(at: clock.now, wallMs: wallMs)
        #expect(breach.map(\.entry.detail) == ["mitigate: not mitigated within 60 s"])
        #expect(book.tick(at: clock.now, wallMs: wallMs).isEmpty, "once per timer")
        // SEV3: acknowledge within 30 min.
        advance(.milliseconds(30 * 60_000 - 60_001))
        #expect(book.tick(at: clock.now, wallMs: wallMs).isEmpty)
        advance(.milliseconds(1))
        #expect(book.tick(at: clock.now, wallMs: wallMs).map(\.entry.detail) == ["acknowledge: not acknowledged within 30 min"])
        let id = try #require(book.incidents.first?.id)
        _ = try book.acknowledge(id, by: "operator (uid 0)", at: clock.now, wallMs: wallMs)
        #expect(book.incidents.first?.acknowledgedBy == "operator (uid 0)")
        // The status-update cadence counts from the last update (the acknowledgement): 1 h.
        advance(.seconds(3600))
        #expect(book.tick(at: clock.now, wallMs: wallMs).filter { $0.entry.detail.hasPrefix("status_update") }.isEmpty)
        advance(.milliseconds(1))
        #expect(book.tick(at: clock.now, wallMs: wallMs).map(\.entry.detail).contains("status_update: none for 60 min"))
    }

    @Test mutating func sev1EscalatesByElapsedTime() {
        var book = IncidentBook()
        let integrity = IncidentTrigger(cause: "integrity:store", kind: .integrity, severity: .sev1, summary: "disk I/O error")
        _ = book.observe([integrity], at: clock.now, wallMs: wallMs)
        #expect(book.incidents.first?.escalation == 2)
        advance(.seconds(7200))
        _ = book.observe([integrity], at: clock.now, wallMs: wallMs)
        #expect(book.tick(at: clock.now, wallMs: wallMs).contains { $0.entry.kind == "escalated" && $0.entry.detail.hasPrefix("E3") })
        advance(.seconds(7200))
        #expect(book.tick(at: clock.now, wallMs: wallMs).contains { $0.entry.detail.hasPrefix("E4") })
        #expect(IncidentSLO.escalation(severity: .sev2, elapsed: .seconds(3600), mitigated: false) == 2)
        #expect(IncidentSLO.escalation(severity: .sev2, elapsed: .seconds(3599), mitigated: false) == 1)
        #expect(IncidentSLO.escalation(severity: .sev2, elapsed: .seconds(7200), mitigated: true) == 1)
    }

    @Test mutating func boundsHold() {
        var settings = IncidentBook.Settings()
        settings.maxOpen = 3
        settings.maxTimeline = 5
        var book = IncidentBook(settings: settings)
        _ = book.observe((0..<5).map { down("a\($0)") }, at: clock.now, wallMs: wallMs)
        #expect(book.incidents.count == 3)
        #expect(book.suppressed == 2)
        for i in 0..<10 {
            advance(.seconds(1))
            _ = book.observe(i % 2 == 0 ? [] : [down("a0")], at: clock.now, wallMs: wallMs)
        }
        let first = book.incidents.first { $0.agents == ["a0"] }
        #expect(first?.timeline.count == 5)
        #expect(first?.timeline.first?.kind == "opened")
        #expect((first?.timelineDropped ?? 0) > 0)
    }

    /// Agents can raise SEV2s of their own (one escalated conflict each): enough of them fill
    /// the slots SEV2 may use, and a SEV1 (the store failing) still opens.
    @Test mutating func sev2sOfManyAgentsLeaveRoomForASev1() {
        var book = IncidentBook()
        let settings = IncidentBook.Settings()
        let escalated = (0..<200).map { i in
            IncidentTrigger(cause: "conflict_escalated:a\(i)", kind: .conflict, severity: .sev2, summary: "critical conflict", agents: ["a\(i)"])
        }
        _ = book.observe(escalated, at: clock.now, wallMs: wallMs)
        #expect(book.incidents.count == settings.maxOpen + settings.reservedForSevere)
        let store = IncidentTrigger(cause: "integrity:store", kind: .integrity, severity: .sev1, summary: "the store cannot commit")
        _ = book.observe(escalated + [store], at: clock.now, wallMs: wallMs)
        #expect(book.incidents.contains { $0.causes == ["integrity:store"] && $0.severity == .sev1 })
        #expect(book.incidents.count == settings.maxOpen + settings.reservedForSevere + 1)
        // A SEV3 finds no room, nor does a SEV2 of one more agent.
        _ = book.observe(escalated + [store, down("late")], at: clock.now, wallMs: wallMs)
        #expect(!book.incidents.contains { $0.agents == ["late"] })
        #expect(book.incidents.count == settings.maxOpen + settings.reservedForSevere + 1)
    }

    /// A probe registered 90 agents with the join token, each with a capability of its own, and
    /// let them fall silent: 88 SEV1s filled the book, and a real agent's failure opened nothing.
    @Test mutating func agentsThatOnlyRegisteredThemselvesFillTheirShareAndNoMore() {
        let settings = IncidentBook.Settings()
        var book = IncidentBook(settings: settings)
        let fakes = (0..<90).map { "fake\($0)" }
        let observed = fakes.map { IncidentObservation.Agent(name: $0, capabilities: ["cap-" + $0], down: true, healthy: false) }
            + [IncidentObservation.Agent(name: "camera", capabilities: ["camera"], down: false, healthy: true)]
        let declared: Set<String> = ["camera"]
        let triggers = IncidentTriggers()
        _ = book.observe(triggers.evaluate(IncidentObservation(agents: observed), at: clock.now), declared: declared, at: clock.now, wallMs: wallMs)
        #expect(book.incidents.count == settings.maxOpenForUndeclared)
        #expect(book.suppressed > 0)
        // Those agents leave (or depart) and the next ones fall silent: their incidents still
        // hold the share until they are resolved.
        advance(.seconds(1))
        let next = (90..<180).map { IncidentObservation.Agent(name: "fake\($0)", capabilities: ["cap-fake\($0)"], down: true, healthy: false) }
        _ = book.observe(triggers.evaluate(IncidentObservation(agents: next), at: clock.now), declared: declared, at: clock.now, wallMs: wallMs)
        #expect(book.incidents.count == settings.maxOpenForUndeclared)
        // The manifest's agent fails: its incident opens, and so does the node's own.
        var failing = observed
        failing[failing.count - 1].down = true
        failing[failing.count - 1].healthy = false
        advance(.seconds(1))
        let store = IncidentTrigger(cause: "integrity:store", kind: .integrity, severity: .sev1, summary: "the store cannot commit")
        _ = book.observe(
            triggers.evaluate(IncidentObservation(agents: failing), at: clock.now) + [store], declared: declared, at: clock.now, wallMs: wallMs)
        // (It takes in the node-level causes that name it too; a fake's incident takes none of them.)
        let camera = book.incidents.first { $0.causes.contains("capability_uncovered:camera") }
        #expect(camera?.severity == .sev1 && camera?.causes.contains("agent_down:camera") == true, "\(String(describing: camera))")
        #expect(!book.incidents.contains { $0.causes.contains("capability_uncovered:cap-fake0") && $0.agents.contains("camera") })
        #expect(book.incidents.contains { $0.causes == ["integrity:store"] })
        #expect(book.incidents.count == settings.maxOpenForUndeclared + 2)
        // The node degrades, with a fake's failure and a manifest agent's in one cause: it joins
        // the incident about the manifest's agents, not a fake's.
        advance(.seconds(1))
        let degraded = IncidentTrigger(
            cause: "degradation", kind: .degradation, severity: .sev2, summary: "the node is degraded", agents: ["fake0", "doorbell"])
        _ = book.observe([degraded], declared: declared.union(["doorbell"]), at: clock.now, wallMs: wallMs)
        let holding = book.incidents.filter { $0.agents.contains("doorbell") }
        #expect(holding.count == 1, "\(holding.map(\.causes))")
        #expect(holding.first?.causes.contains("degradation") == true && holding.first?.causes.contains("capability_uncovered:cap-fake0") == false)
    }

    @Test mutating func aRestartedLeadGoesOnWithTheTimersFromTheWallClock() throws {
        var book = IncidentBook()
        _ = book.observe([down("a")], at: clock.now, wallMs: wallMs)
        let stored = book.incidents
        // The new lead's monotonic clock starts elsewhere; 30 s of wall time passed.
        var restored = IncidentBook(restoring: stored, nextID: 1, now: .seconds(5), wallMs: wallMs + 30_000)
        #expect(restored.nextID == 2)
        #expect(restored.tick(at: .seconds(5 + 30), wallMs: wallMs + 60_000).isEmpty)
        #expect(restored.tick(at: Instant.seconds(5 + 30) + .milliseconds(1), wallMs: wallMs + 60_001).map(\.entry.kind) == ["breach"])
    }

    @Test mutating func theWriteUp() throws {
        var book = IncidentBook()
        _ = book.observe([down("a,b")], at: clock.now, wallMs: wallMs)
        _ = book.noteAction(agent: "a,b", kind: "restarted", detail: "pid | 7", wallMs: wallMs + 20)
        advance(.seconds(2))
        _ = book.observe([], at: clock.now, wallMs: wallMs)
        let resolved = try book.resolve(1, by: "operator (uid 0)", reason: "fixed", wallMs: wallMs + 90_000).incident
        let text = PostMortem.markdown(resolved, nodeID: "n1")
        for section in [
            "# Post-Mortem: INC-000001", "**Severity**: SEV3", "## Executive Summary", "## Impact", "## Timeline (all times UTC)",
            "## Response against targets", "| mitigate | 60 s | 2000 ms | yes |", "## Root Cause", "## What went well?",
            "## What went badly?", "## Where did we get lucky?", "## Action Items", "Blameless",
        ] {
            #expect(text.contains(section), "\(section)")
        }
        #expect(text.contains("pid \\| 7"), "a pipe in a detail does not break the table")
        #expect(PostMortem.csvRow(resolved) == "2027-01-15,INC-000001,SEV3,agent_down,1,1.5,unknown,by operator (uid 0): fixed,No")
        #expect(PostMortem.csvField("a,\"b\"") == "\"a,\"\"b\"\"\"")
        #expect(PostMortem.csvField("=HYPERLINK(\"http://x\")") == "\"'=HYPERLINK(\"\"http://x\"\")\"")
        #expect(PostMortem.csvField("@SUM(A1)") == "'@SUM(A1)" && PostMortem.csvField("-2+3") == "'-2+3" && PostMortem.csvField("1.5") == "1.5")
    }

    /// The wall clock stepped back five hours after the incident opened (a Pi's NTP correcting
    /// a clock that ran ahead): the write-up shows no negative duration, and a target met on the
    /// monotonic clock is not reported missed.
    @Test mutating func aWriteUpAcrossAClockSteppedBackHasNoNegativeDuration() throws {
        var book = IncidentBook()
        _ = book.observe([down("a")], at: clock.now, wallMs: wallMs)
        advance(.seconds(30))
        let stepped = wallMs - 5 * 3_600_000
        _ = try book.acknowledge(1, by: "operator", at: clock.now, wallMs: stepped)
        let resolved = try book.resolve(1, by: "operator", reason: "fixed", wallMs: stepped + 1_000).incident
        let text = PostMortem.markdown(resolved, nodeID: "n1")
        let negative = (0...9).contains { text.contains(" -\($0)") || text.contains("(-\($0)") }
        #expect(!negative, "\(text)")
        #expect(text.contains("| acknowledge | 30 min | 0 ms | yes |"), "\(text)")
        #expect(text.contains("_Every target was met._"))
        #expect(PostMortem.csvRow(resolved).contains(",1,0.0,"), "\(PostMortem.csvRow(resolved))")
    }
}
