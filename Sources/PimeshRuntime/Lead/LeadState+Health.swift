import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshServer
import PimeshSystem

extension LeadState {
    func agentViews() -> [AgentView] {
        let now = Clock.monotonicNow()
        let supervision = supervisor?.views(now: now) ?? [:]
        return registry.views(at: now, outstanding: tasks.snapshot.outstanding).map { view in
            var view = view
            view.supervision = supervision[view.id]
            return view
        }
    }

    func agentView(_ id: AgentID) -> AgentView? {
        let now = Clock.monotonicNow()
        guard var view = registry.view(of: id, at: now, outstanding: tasks.snapshot.outstanding[id] ?? 0) else { return nil }
        view.supervision = supervisor?.views(now: now)[id]
        return view
    }

    func healthReport(now: Instant) -> HealthReport {
        let snapshot = health.snapshot
        let counts = registry.healthCounts(at: now, expected: supervisor?.expectedAgents() ?? [])
        let summary = supervisor?.summary ?? Supervisor.Summary()
        var report = HealthReport(
            level: snapshot.level.rawValue, restrictions: DegradationPolicy(level: snapshot.level).restrictions,
            conditions: Dictionary(uniqueKeysWithValues: counts.byCondition.map { ($0.key.rawValue, $0.value) })
                .merging(counts.pending > 0 ? ["pending": counts.pending] : [:]) { first, _ in first },
            supervised: summary.supervised, attached: summary.attached, restarts: summary.restarts, refusedManifests: summary.refused,
            awaitingOperator: summary.awaiting, openGroupBreakers: registry.openGroupBreakers(),
            agentsMemoryBytes: snapshot.agentsMemoryBytes, ramBudgetBytes: snapshot.ramBudgetBytes,
            cgroups: supervisor?.cgroupNote ?? "no supervisor", warnings: summary.warnings, failed: summary.failed)
        report.tiers = health.tierSummaries.map(HealthReport.TierReport.init)
        return report
    }

    /// Seed 001 §6.3: DEGRADED_MODERATE refuses scatter over 1,000 agents; from
    /// DEGRADED_SEVERE on every ask and broadcast needs an operator's approval (428 without).
    @_optimize(size)  // cold: an operator's ask or broadcast (the 25 MB budget)
    func checkScatterAllowed(_ request: GatherRequest) throws(APIError) {
        let policy = health.policy
        // Counting candidates costs a registry pass: only where the level has a limit.
        var targets = 0
        if policy.maxScatterAgents != nil {
            let candidates = registry.gatherTargets(capability: request.capability, at: Clock.monotonicNow(), outstanding: [:]).count
            targets = min(candidates, request.sampleSize ?? candidates)
        }
        switch policy.scatterVerdict(priority: request.priority, approved: request.approved, targets: targets) {
        case .allowed:
            return
        case .needsApproval:
            throw APIError(
                status: HTTPResponse.Status(code: 428, reasonPhrase: "Precondition Required"),
                message: "the node is \(policy.level.rawValue): mesh-wide operations need an operator's approval; "
                    + "send again with \"approved\": true (pimesh ask|broadcast --approve), which the audit log records",
                field: "approved")
        case .shed(let minimum):
            throw APIError(
                status: .serviceUnavailable,
                message: "the node is \(policy.level.rawValue): ask and broadcast below priority \(minimum) are shed (this one is \(request.priority))")
        case .tooManyAgents(let targets, let limit):
            throw APIError(
                status: .serviceUnavailable,
                message: "the node is \(policy.level.rawValue): ask and broadcast to \(targets) agents are refused (limit \(limit))")
        }
    }
}
