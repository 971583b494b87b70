import PimeshCore
import Synchronization

/// The lead's one set of coordination KPIs, fed by task completions and scatter-gathers.
final class KPIRecorder: Sendable {
    private let kpis: Mutex<CoordinationKPIs>

    init(settings: CoordinationKPIs.Settings = .init()) {
        kpis = Mutex(CoordinationKPIs(settings: settings))
    }

    var tolerance: Duration {
        kpis.withLock { $0.settings.predictionTolerance }
    }

    func recordArrival(actualMs: Double, predictedMs: Double, inWindow: Bool, state: TrinaryState) {
        kpis.withLock { $0.recordArrival(actualMs: actualMs, predictedMs: predictedMs, inWindow: inWindow, state: state) }
    }

    func recordMissedArrivals(_ count: Int) {
        kpis.withLock { for _ in 0..<count { $0.recordMissedArrival() } }
    }

    func recordOperation(achievedQuorum: Bool, durationMs: Double) {
        kpis.withLock { $0.recordOperation(achievedQuorum: achievedQuorum, durationMs: durationMs) }
    }

    var indicators: [CoordinationKPIs.Indicator] {
        kpis.withLock { $0.indicators }
    }
}
