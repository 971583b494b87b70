import PimeshAgent
import PimeshCore
import PimeshSystem
import Synchronization

/// The lead's one set of coordination KPIs, fed by task completions, scatter-gathers and health
/// ticks, on the monotonic clock.
final class KPIRecorder: Sendable {
    private let kpis: Mutex<CoordinationKPIs>

    init(settings: CoordinationKPIs.Settings = .init()) {
        kpis = Mutex(CoordinationKPIs(settings: settings))
    }

    var tolerance: Duration {
        kpis.withLock { $0.settings.predictionTolerance }
    }

    func recordArrival(actualMs: Double, predictedMs: Double, inWindow: Bool, state: TrinaryState) {
        let now = Clock.monotonicNow()
        kpis.withLock { $0.recordArrival(actualMs: actualMs, predictedMs: predictedMs, inWindow: inWindow, state: state, at: now) }
    }

    func taskArrivedInWindow(actualMs: Double, leadTimeMs: Double) -> Bool {
        kpis.withLock { $0.taskArrivedInWindow(actualMs: actualMs, leadTimeMs: leadTimeMs) }
    }

    func recordMissedArrivals(_ count: Int) {
        let now = Clock.monotonicNow()
        kpis.withLock { $0.recordMissedArrivals(count, at: now) }
    }

    func recordOperation(achievedQuorum: Bool, durationMs: Double) {
        let now = Clock.monotonicNow()
        kpis.withLock { $0.recordOperation(achievedQuorum: achievedQuorum, durationMs: durationMs, at: now) }
    }

    func recordActiveShare(_ share: Double?, at now: Instant) {
        kpis.withLock { $0.recordActiveShare(share, at: now) }
    }

    var indicators: [CoordinationKPIs.Indicator] {
        let now = Clock.monotonicNow()
        return kpis.withLock { $0.indicators(at: now) }
    }
}
