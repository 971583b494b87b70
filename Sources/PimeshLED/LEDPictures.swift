import PimeshCore

/// The pictures in docs/leds.md, one file each.
public enum LEDPictures {
    public static var all: [(file: String, svg: String)] {
        let alive = LEDStatus(alive: true)
        return [
            (
                "liveness.svg",
                LEDTimelineSVG.render(
                    title: "liveness: a 100 ms pulse every second while the lead runs",
                    rows: [
                        ("lead running", LEDPatterns.pattern(for: .liveness, alive), "#2e9d3e"),
                        ("lead stopped", LEDPatterns.pattern(for: .liveness, LEDStatus(alive: false)), "#2e9d3e"),
                    ])
            ),
            (
                "levels.svg",
                LEDTimelineSVG.render(
                    title: "level: the degradation level by blink speed",
                    rows: DegradationLevel.allCases.map { ("\($0.rawValue)", LEDPatterns.level($0), "#d9a400") })
            ),
            (
                "alerts.svg",
                LEDTimelineSVG.render(
                    title: "alert: N blinks, then 1.5 s dark, for the highest open incident severity SEVN",
                    rows: LEDAlert.allCases.map { ("\($0.blinks) \($0.name)", LEDPatterns.alert($0), "#c8262b") },
                    span: .seconds(8))
            ),
        ]
    }
}
