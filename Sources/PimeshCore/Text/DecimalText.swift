/// Numbers as people read them, with a fixed count of places: the CLI's tables and the bench's
/// reports. Built from integers because `String(Double)` switches to exponent form (1e+16) and
/// keeps the sign of negative zero.
public enum DecimalText {
    public static func format(_ value: Double, places: Int = 1) -> String {
        var factor = 1.0
        for _ in 0..<places { factor *= 10 }
        let scaled = (value * factor).rounded()
        guard scaled.isFinite, abs(scaled) < 1e15 else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        let whole = Int64(scaled)
        let sign = whole < 0 ? "-" : ""
        let magnitude = whole.magnitude
        guard places > 0 else { return sign + String(magnitude) }
        let divisor = UInt64(factor)
        var fraction = String(magnitude % divisor)
        while fraction.count < places { fraction = "0" + fraction }
        return sign + String(magnitude / divisor) + "." + fraction
    }
}
