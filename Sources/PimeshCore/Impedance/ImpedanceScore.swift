/// The composite impedance score, 0 (instant, reliable, steady) … 1000 (useless).
///
/// Seed 001 leaves the formula open (§2.3 "composite 0-1000 scale") but fixes how leads read it:
/// above 800 an agent is degraded (§4.2). pimesh defines it as one minus the product of three
/// factors, each in 0…1, so that any one of them collapsing makes the agent a poor choice:
///
///     speed     = H / (H + predicted_arrival_ms)        H = 1000 ms: a 1 s arrival halves it
///     stability = 1 / (1 + drift)                      drift 0.5 (unstable) costs a third
///     score     = round(1000 × (1 − speed × reliability × stability))
///
/// Worked examples are in docs/impedance.md.
public enum ImpedanceScore {
    public struct Settings: Sendable, Equatable {
        /// The arrival at which `speed` is one half.
        public var arrivalHalfPointMs: Double
        /// Above this score an agent is degraded (seed 001 §4.2).
        public var degradedAbove: Int
        /// Above this drift an agent is unstable (seed 001 §4.2).
        public var unstableAboveDrift: Double

        public init(arrivalHalfPointMs: Double = 1000, degradedAbove: Int = 800, unstableAboveDrift: Double = 0.5) {
            self.arrivalHalfPointMs = arrivalHalfPointMs
            self.degradedAbove = degradedAbove
            self.unstableAboveDrift = unstableAboveDrift
        }
    }

    public static func speed(predictedArrivalMs: Double, settings: Settings = Settings()) -> Double {
        let arrival = max(0, predictedArrivalMs)
        return settings.arrivalHalfPointMs / (settings.arrivalHalfPointMs + arrival)
    }

    public static func stability(drift: Double) -> Double {
        1 / (1 + max(0, drift))
    }

    public static func score(
        predictedArrivalMs: Double,
        reliability: Double,
        drift: Double,
        settings: Settings = Settings()
    ) -> Int {
        let quality = speed(predictedArrivalMs: predictedArrivalMs, settings: settings)
            * min(max(reliability, 0), 1)
            * stability(drift: drift)
        return Int.score(fromQuality: quality)
    }
}
