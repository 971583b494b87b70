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
        /// Seed 000's stage gate: queue latency under 100 ms is a healthy pipeline.
        public var queueLatencyFullAtMs: Double = 100
        /// A commit (with its fsync) on a good SD card takes a few ms, on a worn one tens; past
        /// 100 ms writes queue behind it.
        public var storageCommitFullAtMs: Double = 100
        /// A backlog or a slow card is a symptom, not a resource: alone, neither takes more than
        /// half of the node (so neither alone makes it degraded, nor stops emergency restarts).
        public var symptomFloor: Double = 0.5
        /// Under-voltage: the firmware drops the ARM to 600 MHz and the SD card risks corruption.
        public var underVoltageFactor: Double = 0.5
        public var throttledFactor: Double = 0.6
        public var frequencyCappedFactor: Double = 0.8

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
    /// The node's own task pipeline: 1 while the oldest waiting task waited ≤ 100 ms.
    public var tasks: Double
    /// The SD card: 1 while commits' p99 is ≤ 50 ms.
    public var storage: Double
    /// Power: under-voltage, throttling or a capped clock.
    public var power: Double
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
        func within(_ value: Double?, fullAt limit: Double) -> Double {
            guard let value, limit > 0 else { return 1 }
            return max(settings.symptomFloor, 1 / max(1, value / limit))
        }
        tasks = within(readings.taskQueueLatencyMs, fullAt: settings.queueLatencyFullAtMs)
        storage = within(readings.storageCommitP99Ms, fullAt: settings.storageCommitFullAtMs)
        var power = 1.0
        if readings.frequencyCapped == true { power = min(power, settings.frequencyCappedFactor) }
        if readings.throttled == true { power = min(power, settings.throttledFactor) }
        if readings.underVoltage == true { power = min(power, settings.underVoltageFactor) }
        self.power = power
        let quality = cpu * memory * io * thermal * headroom * tasks * storage * power
        score = Int.score(fromQuality: quality)
    }
}
