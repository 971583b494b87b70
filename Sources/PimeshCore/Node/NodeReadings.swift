/// What the shell read about the Pi itself from /proc and /sys. Absent readings are nil:
/// PSI needs a kernel with CONFIG_PSI (Pi OS enables it), thermal zones may be missing in VMs.
public struct NodeReadings: Sendable, Equatable, Codable {
    public var cpuCount: Int
    public var loadAverage: Double?
    /// `/proc/pressure/*` "some avg10": percent of the last 10 s some task was stalled.
    public var cpuPressure: Double?
    public var memoryPressure: Double?
    public var ioPressure: Double?
    public var memoryTotalBytes: UInt64?
    public var memoryAvailableBytes: UInt64?
    /// Hottest thermal zone, in °C.
    public var temperatureCelsius: Double?
    /// The Pi's supply is below 4.63 V now (firmware `get_throttled` bit 0, or the
    /// `raspberrypi-hwmon` `in0_lcrit_alarm`); nil where neither exists.
    public var underVoltage: Bool?
    /// The firmware throttles the ARM now (bit 2) or caps its frequency (bit 1).
    public var throttled: Bool?
    public var frequencyCapped: Bool?
    /// Under-voltage since boot (bit 16): the SD card may have seen a brown-out.
    public var underVoltageSinceBoot: Bool?
    /// The median over agents holding waiting work of how long their oldest task has waited
    /// (ms): one agent that never fetches its work does not make the whole node slow. nil with
    /// none waiting.
    public var taskQueueLatencyMs: Double?
    /// The store's commit time, p99 of the last 1,000: the SD card's write latency (durable
    /// commits fsync).
    public var storageCommitP99Ms: Double?
    /// The lead's own bytes written to storage since it started (`/proc/self/io` write_bytes).
    public var leadWrittenBytes: UInt64?

    public init(
        cpuCount: Int, loadAverage: Double? = nil, cpuPressure: Double? = nil, memoryPressure: Double? = nil,
        ioPressure: Double? = nil, memoryTotalBytes: UInt64? = nil, memoryAvailableBytes: UInt64? = nil,
        temperatureCelsius: Double? = nil
    ) {
        self.cpuCount = cpuCount
        self.loadAverage = loadAverage
        self.cpuPressure = cpuPressure
        self.memoryPressure = memoryPressure
        self.ioPressure = ioPressure
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes
        self.temperatureCelsius = temperatureCelsius
    }

    /// The firmware's `get_throttled` word: bit 0 under-voltage now, 1 clock capped, 2
    /// throttled, 16 under-voltage since boot. The one place those bits are read.
    public mutating func setPower(throttledBits bits: UInt32) {
        underVoltage = bits & 0x1 != 0
        frequencyCapped = bits & 0x2 != 0
        throttled = bits & 0x4 != 0
        underVoltageSinceBoot = bits & 0x1_0000 != 0
    }

    /// The median (the lower middle of an even count), nil for none.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        return values.sorted()[(values.count - 1) / 2]
    }
}
