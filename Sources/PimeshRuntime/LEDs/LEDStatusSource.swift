import PimeshAgent
import PimeshCore

extension LeadState {
    /// What the LEDs show, read once a second by the LED driver: the degradation level the health
    /// tick judged, and the most severe open condition (docs/leds.md).
    func ledStatus() -> LEDStatus {
        let now = Clock.monotonicNow()
        let summary = registry.summary(at: now)
        var open: [LEDAlert] = []
        if !registry.quarantinedNames().isEmpty { open.append(.quarantine) }
        if node.latest.impedance.score > 800 { open.append(.nodeStrained) }
        let failing = registry.healthCounts(at: now).byCondition.filter { $0.key.isFailure }.values.reduce(0, +)
        if summary.transit > 0 || failing > 0 { open.append(.agentsSilent) }
        if summary.conflict > 0 { open.append(.agentsInConflict) }
        if kpis.indicators.contains(where: { $0.met == false }) { open.append(.kpiMissed) }
        if let supervisor, !supervisor.summary.failed.isEmpty { open.append(.agentFailed) }
        return LEDStatus(
            alive: true, level: health.level,
            alert: LEDStatus.mostSevere(open))
    }
}
