import Histogram
import PimeshAgent

/// Percentiles of a set of latencies, from an HdrHistogram with microsecond resolution and three
/// significant digits: p99 of a few thousand samples is exact to 0.1 %, and recording costs no
/// allocation while a benchmark runs.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: Int
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var maxMs: Double

    public static let empty = LatencySummary(count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0)

    public init(count: Int, p50Ms: Double, p90Ms: Double, p99Ms: Double, maxMs: Double) {
        self.count = count
        self.p50Ms = p50Ms
        self.p90Ms = p90Ms
        self.p99Ms = p99Ms
        self.maxMs = maxMs
    }

    /// Values below zero (clocks of two processes a hair apart) count as zero.
    public init(milliseconds values: [Double]) {
        // One hour in microseconds: any latency a benchmark can wait for.
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        for value in values {
            histogram.record(UInt64(min(3_600_000_000, max(0, value * 1000).rounded())))
        }
        func ms(_ microseconds: UInt64) -> Double { ImpedanceView.round(Double(microseconds) / 1000) }
        self.init(
            count: values.count, p50Ms: values.isEmpty ? 0 : ms(histogram.valueAtPercentile(50)),
            p90Ms: values.isEmpty ? 0 : ms(histogram.valueAtPercentile(90)),
            p99Ms: values.isEmpty ? 0 : ms(histogram.valueAtPercentile(99)), maxMs: values.isEmpty ? 0 : ms(histogram.max))
    }
}
