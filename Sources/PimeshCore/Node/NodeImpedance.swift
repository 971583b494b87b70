/// The node's own impedance, on the same 0–1000 scale as an agent's: one minus the product of
/// factors in 0…1, each saying how much of the Pi is left for work (docs/impedance.md).
public struct NodeImpedance: Sendable, Equatable, Codable {
    public struct Settings: Sendable, Equatable {
        /// A Pi 4B's firmware starts soft throttling at 80 °C and caps at 85 °C; pimesh starts
        /// counting heat against the node 10 °C before that.
        public var thermalFullAtCelsius: Double
        public var thermalWorstAtCelsius: Double
        /// At 85 °C the ARM clock is roughly a third lower; the factor bottoms out above zero.
        public var thermalWorstFactor: Double
        /// Below this share of MemAvailable the kernel starts reclaiming hard.
        public var memoryHeadroomFullAt: Double

        public init(
            thermalFullAtCelsius: Double = 70, thermalWorstAtCelsius: Double = 85, thermalWorstFactor: Double = 0.2,
            memoryHeadroomFullAt: Double = 0.2
        ) {
            self.thermalFullAtCelsius = thermalFullAtCelsius
            self.thermalWorstAtCelsius = thermalWorstAtCelsius
            self.thermalWorstFactor = thermalWorstFactor
            self.memoryHeadroomFullAt = memoryHeadroomFullAt
        }
    }

    public var cpu: Double
    public var memory: Double
    public var io: Double
    public var thermal: Double
    public var headroom: Double
    public var score: Int

    public init(readings: NodeReadings, settings: Settings = Settings()) {
        func free(_ pressure: Double?) -> Double {
            guard let pressure else { return 1 }
            return 1 - min(max(pressure, 0), 100) / 100
        }
        // Without PSI, load above the core count is the share of time a runnable task waits.
        if let pressure = readings.cpuPressure {
            cpu = free(pressure)
        } else if let load = readings.loadAverage, readings.cpuCount > 0 {
            cpu = 1 / max(1, load / Double(readings.cpuCount))
        } else {
            cpu = 1
        }
        memory = free(readings.memoryPressure)
        io = free(readings.ioPressure)
        if let t = readings.temperatureCelsius, t > settings.thermalFullAtCelsius {
            let span = settings.thermalWorstAtCelsius - settings.thermalFullAtCelsius
            let over = min(1, (t - settings.thermalFullAtCelsius) / span)
            thermal = 1 - over * (1 - settings.thermalWorstFactor)
        } else {
            thermal = 1
        }
        if let total = readings.memoryTotalBytes, let available = readings.memoryAvailableBytes, total > 0 {
            let share = Double(available) / Double(total)
            headroom = min(1, share / settings.memoryHeadroomFullAt)
        } else {
            headroom = 1
        }
        let quality = cpu * memory * io * thermal * headroom
        score = Int.score(fromQuality: quality)
    }
}
