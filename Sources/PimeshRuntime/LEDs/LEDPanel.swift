import PimeshAgent
import PimeshCore
import PimeshLED
import Synchronization

/// The lead's LEDs as the API shows them: the driver once it runs, or why there is none.
final class LEDPanel: Sendable {
    private let state = Mutex<(driver: LEDDriver?, note: String)>((nil, "the LEDs are not started yet"))

    func attach(_ driver: LEDDriver?, note: String) {
        state.withLock { $0 = (driver, note) }
    }

    var report: LEDReport {
        let (driver, note) = state.withLock { ($0.driver, $0.note) }
        guard let driver else {
            return LEDReport(backend: "off", note: note, alive: true, level: "–", alert: nil, alertBlinks: nil, leds: [])
        }
        let snapshot = driver.snapshot
        return LEDReport(
            backend: snapshot.backend, note: note, alive: snapshot.status.alive, level: snapshot.status.level.rawValue,
            alert: snapshot.status.alert?.name, alertBlinks: snapshot.status.alert?.blinks,
            leds: snapshot.leds.map { led in
                LEDReport.LED(
                    name: led.assignment.name, role: led.assignment.role.rawValue, on: led.on, pattern: led.pattern.description,
                    periodMs: Int(led.pattern.period.milliseconds.rounded()),
                    litMs: led.pattern.spans.map { [Int($0.start.milliseconds.rounded()), Int($0.length.milliseconds.rounded())] })
            })
    }
}
