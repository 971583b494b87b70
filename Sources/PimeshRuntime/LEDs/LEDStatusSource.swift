import PimeshAgent
import PimeshCore

extension LeadState {
    /// What the LEDs show, read once a second by the LED driver: the degradation level the health
    /// tick judged, and the highest severity among the open incidents (docs/leds.md).
    func ledStatus() -> LEDStatus {
        LEDStatus(alive: true, level: health.level, alert: incidents?.highestOpenSeverity.map(LEDAlert.init))
    }
}
