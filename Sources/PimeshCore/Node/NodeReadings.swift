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
}
