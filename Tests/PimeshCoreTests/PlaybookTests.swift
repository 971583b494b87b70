import Testing

@testable import PimeshCore

/// Playbook runs, root cause and go/no-go (docs/incidents.md), on a manual clock.
@Suite struct PlaybookRunTests {
    let start = Instant.seconds(5_000)

    func playbook(_ steps: [PlaybookStep], slo: Duration = .seconds(60), minRecovered: Double = 1) -> Playbook {
        Playbook(id: "p", title: "t", causes: ["agent_down:"], minSeverity: .sev3, slo: slo, minRecovered: minRecovered, steps: steps)
    }

    @Test func aRequiredStepIsRetriedThenStopsTheRun() {
        var run = PlaybookRun(
            playbook: playbook([
                PlaybookStep(name: "verify", action: .healthCheck, timeout: .seconds(5), retries: 3),
                PlaybookStep(name: "record", action: .recordDiagnostic, timeout: .seconds(1)),
            ]), startedAt: start, startedMs: 0)
        for attempt in 1...3 {
            #expect(run.current(at: start, level: .full)?.name == "verify")
            #expect(run.report(.failed("a0 silent")) == .retrying(attempt: attempt, because: "a0 silent"))
        }
        #expect(run.report(.failed("a0 silent")) == .stopped("required step verify failed: a0 silent"))
        #expect(run.current(at: start, level: .full) == nil)
        let record = run.record(at: start + .seconds(2), recovered: 0, of: 1)
        #expect(record.success == false)
        #expect(record.stepsCompleted == 0)
        #expect(record.stepsTotal == 2)
        #expect(record.executionMs == 2000)
    }

    @Test func anOptionalStepThatFailsLetsTheRunGoOn() {
        var run = PlaybookRun(
            playbook: playbook(
                [
                    PlaybookStep(name: "verify_b", action: .healthCheck, timeout: .seconds(5), required: false),
                    PlaybookStep(name: "record", action: .recordDiagnostic, timeout: .seconds(1)),
                ], minRecovered: 2.0 / 3), startedAt: start, startedMs: 0)
        _ = run.current(at: start, level: .full)
        #expect(run.report(.failed("b silent")) == .stepFailedContinuing("verify_b"))
        #expect(run.current(at: start, level: .full)?.name == "record")
        #expect(run.report(.succeeded("")) == .finished)
        // Seed 002: 2 of 3 critical agents recovered is a success, 1 of 3 is not.
        #expect(run.record(at: start + .seconds(1), recovered: 2, of: 3).success)
        #expect(run.record(at: start + .seconds(1), recovered: 1, of: 3).success == false)
        #expect(run.record(at: start + .seconds(1), recovered: 2, of: 3).stepsCompleted == 1)
    }

    @Test func theSLOBoundsTheRunAndEachAttempt() {
        var run = PlaybookRun(
            playbook: playbook([PlaybookStep(name: "verify", action: .healthCheck, timeout: .seconds(50))], slo: .seconds(60)),
            startedAt: start, startedMs: 0)
        #expect(run.current(at: start + .seconds(30), level: .full) != nil)
        #expect(run.attemptDeadline(at: start + .seconds(30)) == start + .seconds(60), "the SLO is nearer than the timeout")
        #expect(run.attemptDeadline(at: start) == start + .seconds(50))
        #expect(run.current(at: start + .seconds(60), level: .full) != nil, "at exactly the SLO it may still run")
        #expect(run.current(at: start + .milliseconds(60_001), level: .full) == nil)
        #expect(run.record(at: start + .milliseconds(60_001), recovered: 1, of: 1).stoppedBecause == "over its SLO of 60 s")
    }

    @Test func aStepWhoseTierMayNotActStopsOrIsSkipped() {
        var run = PlaybookRun(
            playbook: playbook([
                PlaybookStep(name: "freeze", action: .freezeLowestPriority, timeout: .seconds(5), required: false, count: 1),
                PlaybookStep(name: "restart", action: .restartAgents, timeout: .seconds(5)),
            ]), startedAt: start, startedMs: 0)
        // L1 acts up to MODERATE; at SEVERE the optional one is skipped and the required one stops the run.
        #expect(run.current(at: start, level: .moderate)?.name == "freeze")
        #expect(run.current(at: start, level: .severe) == nil)
        #expect(run.stoppedBecause?.contains("step restart (L1) waits for an operator") == true)
        var operatorOnly = PlaybookRun(
            playbook: playbook([PlaybookStep(name: "ask", action: .awaitOperator, timeout: .seconds(1))]), startedAt: start, startedMs: 0)
        #expect(operatorOnly.current(at: start, level: .full) == nil, "L2 never runs unattended")
        // Checks run at every level; the emergency restart too, guarded by the node's own health.
        var checks = PlaybookRun(
            playbook: playbook([
                PlaybookStep(name: "assess", action: .assess, timeout: .seconds(1)),
                PlaybookStep(name: "restart", action: .restartCritical, timeout: .seconds(5)),
            ]), startedAt: start, startedMs: 0)
        #expect(checks.current(at: start, level: .emergency)?.name == "assess")
        _ = checks.report(.succeeded(""))
        #expect(checks.current(at: start, level: .emergency)?.name == "restart")
        #expect(PlaybookAction.nodeHealthyForEmergencyRestart(nodeScore: 800, overRAMBudget: false))
        #expect(PlaybookAction.nodeHealthyForEmergencyRestart(nodeScore: 800.1, overRAMBudget: false) == false)
        #expect(PlaybookAction.nodeHealthyForEmergencyRestart(nodeScore: 10, overRAMBudget: true) == false)
    }

    @Test func theCatalogPrefersTheOperatorsPlaybooksAndMatchesCausesAndSeverity() {
        let single = Playbook(id: "single", title: "", causes: ["agent_down:"], minSeverity: .sev3, slo: .seconds(60), steps: [])
        let emergency = Playbook(id: "emergency", title: "", causes: ["critical_agents_down"], minSeverity: .sev1, slo: .seconds(120), steps: [])
        var replaced = single
        replaced.source = "playbooks.d/single.json"
        let catalog = PlaybookCatalog(builtIn: [emergency, single], operator: [replaced])
        #expect(catalog.playbooks.map(\.source) == ["playbooks.d/single.json", "built-in"])
        #expect(catalog.playbook(causes: ["agent_down:a"], severity: .sev3)?.source == "playbooks.d/single.json")
        #expect(catalog.playbook(causes: ["agent_down:a"], severity: .sev4) == nil, "below its minimum severity")
        #expect(catalog.playbook(causes: ["critical_agents_down", "agent_down:a"], severity: .sev1)?.id == "single", "the first that answers")
        let builtInOrder = PlaybookCatalog(builtIn: [emergency, single], operator: [])
        #expect(builtInOrder.playbook(causes: ["critical_agents_down", "agent_down:a"], severity: .sev1)?.id == "emergency")
    }

    @Test func theRecordReadsAsTheSeedsExecutionLog() {
        let record = PlaybookRunRecord(
            playbook: "emergency_recovery", startedMs: 0, stepsCompleted: 10, stepsTotal: 10, executionMs: 1430, success: true,
            agentsRecovered: 3, agentsTotal: 3, stoppedBecause: nil)
        #expect(record.summary == "emergency_recovery: 10/10 steps in 1.4 s, success, 3/3 agents recovered")
        var slow = record
        slow.executionMs = 25_300
        #expect(slow.summary.contains("in 25 s"))
        slow.executionMs = 40
        #expect(slow.summary.contains("in 0.0 s"))
    }
}

@Suite struct RootCauseTests {
    let start = Instant.seconds(20_000)

    func onset(_ agent: String, _ seconds: Double, cap: String = "c", signature: String = "exit 1", silent: Bool = false) -> RootCause.Onset {
        RootCause.Onset(
            agent: agent, capabilities: [cap], at: start + .milliseconds(Int64(seconds * 1000)), signature: signature, silentWhileRunning: silent)
    }

    @Test func onsetsWithinTenSecondsFormACluster() {
        let clusters = RootCause.clusters([onset("a", 0), onset("b", 10), onset("c", 20.001), onset("d", 25)])
        #expect(clusters.map { $0.map(\.agent) } == [["a", "b"], ["c", "d"]])
    }

    @Test func candidatesAreTriedInOrderAndTheFirstWithEvidenceWins() {
        let cluster = [onset("a", 0, cap: "x"), onset("b", 1, cap: "y"), onset("c", 2, cap: "z"), onset("d", 3, cap: "x", signature: "SIGSEGV")]
        var evidence = RootCause.Evidence()
        // Signature: 3 of 4 share "exit 1".
        #expect(RootCause.analyse(cluster, evidence: evidence).category == .signature)
        #expect(RootCause.analyse(cluster, evidence: evidence).confidence == 0.75)
        // A change to two of them in the ten minutes before comes first (2 of 4 = half).
        evidence.changes = [("a", start - .seconds(600), "manifest"), ("b", start - .seconds(10), "binary")]
        let change = RootCause.analyse(cluster, evidence: evidence)
        #expect(change.category == .change)
        #expect(change.agents == ["a", "b"])
        #expect(change.confidence == 0.5)
        // One change only explains a quarter: not enough.
        evidence.changes = [("a", start - .milliseconds(600_001), "manifest"), ("b", start - .seconds(10), "binary")]
        #expect(RootCause.analyse(cluster, evidence: evidence).category == .signature, "a's change is older than 10 min")
        // Resources in the minute before the first onset come before changes.
        evidence.resourceAlarms = [(start - .seconds(60), "ram_over_budget")]
        #expect(RootCause.analyse(cluster, evidence: evidence).category == .resources)
        evidence.resourceAlarms = [(start - .milliseconds(60_001), "ram_over_budget")]
        #expect(RootCause.analyse(cluster, evidence: evidence).category == .signature)
        // The lead restarting within ten seconds before agents went silent comes first of all;
        // exits after a lead start are not the lead's doing.
        evidence.leadStartedAt = start - .seconds(1)
        #expect(RootCause.analyse(cluster, evidence: evidence).category == .signature)
        var silentAfterStart = cluster
        silentAfterStart[0].silentWhileRunning = true
        silentAfterStart[1].silentWhileRunning = true
        #expect(RootCause.analyse(silentAfterStart, evidence: evidence).category == .lead, "2 of 4 silent within 10 s of the start")
        evidence.leadStartedAt = start - .milliseconds(10_001)
        #expect(RootCause.analyse(silentAfterStart, evidence: evidence).category == .signature, "their silence began more than 10 s after the start")
    }

    @Test func silenceWhileProcessesRunPointsAtTheLead() {
        let cluster = [onset("a", 0, silent: true), onset("b", 0.5, silent: true), onset("c", 0.7, silent: true), onset("d", 1)]
        let finding = RootCause.analyse(cluster, evidence: RootCause.Evidence())
        #expect(finding.category == .lead)
        #expect(finding.confidence == 0.75)
        // Two silent agents are their own fault.
        #expect(RootCause.analyse(Array(cluster.dropFirst()), evidence: RootCause.Evidence()).category != .lead)
    }

    @Test func aSharedCapabilityThenALeaderThenUnknown() {
        let capability = [
            onset("a", 0, cap: "db", signature: "exit 1"), onset("b", 1, cap: "db", signature: "exit 2"),
            onset("c", 2, cap: "web", signature: "exit 3"),
        ]
        #expect(RootCause.analyse(capability, evidence: RootCause.Evidence()).category == .capability)
        let leader = [
            onset("a", 0, cap: "p", signature: "exit 1"), onset("b", 1.5, cap: "q", signature: "exit 2"),
            onset("c", 1.6, cap: "r", signature: "exit 3"),
        ]
        let found = RootCause.analyse(leader, evidence: RootCause.Evidence())
        #expect(found.category == .leader)
        #expect(found.agents == ["a"])
        var noLeader = leader
        noLeader[1].at = start + .seconds(1)
        #expect(RootCause.analyse(noLeader, evidence: RootCause.Evidence()).category == .unknown, "exactly one heartbeat ahead is not a leader")
    }

    @Test func theErrorPatternNamesWhatASharedTextUsuallyMeans() {
        let cluster = (0..<5).map { onset("a\($0)", Double($0), cap: "c\($0)", signature: "upstream timed out") }
        let finding = RootCause.analyse(cluster, evidence: RootCause.Evidence())
        #expect(finding.category == .signature)
        #expect(finding.summary.contains("timeout: usually latency or an outage"))
        #expect(finding.text.hasPrefix("signature (confidence 100 %, 5 onset(s))"))
    }

    @Test func goNoGoRollsBackOnAChangeAHalfOfGroupsOrFifteenMinutesUnknown() {
        let change = RootCause.Finding(category: .change, summary: "s", confidence: 1, clusterSize: 1, agents: ["a"])
        let unknown = RootCause.Finding(category: .unknown, summary: "s", confidence: 0, clusterSize: 3, agents: [])
        if case .rollBack = GoNoGo.decide(finding: change, elapsed: .zero, groupsAffected: 1, groupsTotal: 10) {} else { Issue.record("change") }
        if case .goOn = GoNoGo.decide(finding: unknown, elapsed: .seconds(899), groupsAffected: 5, groupsTotal: 10) {} else {
            Issue.record("half the groups is not more than half")
        }
        if case .rollBack = GoNoGo.decide(finding: unknown, elapsed: .seconds(899), groupsAffected: 6, groupsTotal: 10) {} else {
            Issue.record("more than half")
        }
        if case .rollBack = GoNoGo.decide(finding: unknown, elapsed: .seconds(900), groupsAffected: 1, groupsTotal: 10) {} else {
            Issue.record("15 min unknown")
        }
    }
}

@Suite struct FleetIncidentTests {
    @Test func incidentsOnDifferentNodesWithinSixtySecondsAreOneGroup() {
        let entries = [
            FleetIncidents.Entry(node: "a", id: 1, openedMs: 0), FleetIncidents.Entry(node: "b", id: 7, openedMs: 60_000),
            FleetIncidents.Entry(node: "c", id: 2, openedMs: 120_001), FleetIncidents.Entry(node: "c", id: 3, openedMs: 150_000),
        ]
        let groups = FleetIncidents.group(entries)
        #expect(groups.map { $0.map(\.id) } == [[1, 7], [2], [3]], "60 s apart joins; 60.001 s does not; one node alone is not a fleet event")
    }

    /// Rows a coordinator stored before it checked times may hold any Int64: they are far
    /// apart, not an overflow that stops the coordinator listing its incidents.
    @Test func timesAsFarApartAsInt64GoesAreSeparateGroups() {
        let entries = [
            FleetIncidents.Entry(node: "a", id: 1, openedMs: .min), FleetIncidents.Entry(node: "b", id: 2, openedMs: 0),
            FleetIncidents.Entry(node: "c", id: 3, openedMs: .max), FleetIncidents.Entry(node: "d", id: 4, openedMs: .max),
        ]
        #expect(FleetIncidents.group(entries).map { $0.map(\.id) } == [[1], [2], [3, 4]])
    }
}
