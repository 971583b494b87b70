/// `exp` and `log10` in plain Swift: the core imports no libc (DESIGN.md §1), and phi accrual
/// needs both. Range reduction plus short series; accurate to ~1e-15 relative over the range
/// the detector uses, which the tests check against libm.
public enum PhiMath {
    static let ln2Hi = 6.93147180369123816490e-01
    static let ln2Lo = 1.90821492927058770002e-10
    static let ln2 = 0.6931471805599453094
    static let ln10 = 2.302585092994045684

    public static func exp(_ x: Double) -> Double {
        if x.isNaN { return x }
        if x > 709.78 { return .infinity }
        if x < -745.13 { return 0 }
        let k = (x / ln2).rounded()
        // Two-part ln 2 keeps r exact enough for k up to ~1000.
        let r = (x - k * ln2Hi) - k * ln2Lo
        var term = 1.0
        var sum = 1.0
        for n in 1...18 {
            term *= r / Double(n)
            sum += term
        }
        return Double(sign: .plus, exponent: Int(k), significand: sum)
    }

    /// Natural logarithm; nil-free: ln of 0 is -infinity, of a negative number NaN.
    public static func ln(_ x: Double) -> Double {
        if x.isNaN || x < 0 { return .nan }
        if x == 0 { return -.infinity }
        if x.isInfinite { return x }
        var exponent = Double(x.exponent)
        var m = x.significand
        if m > 1.4142135623730951 {
            m /= 2
            exponent += 1
        }
        // ln m = 2 atanh(s), s = (m-1)/(m+1), |s| ≤ 0.172.
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var power = s
        var sum = 0.0
        var n = 1.0
        while n < 40 {
            sum += power / n
            power *= s2
            n += 2
        }
        return exponent * ln2 + 2 * sum
    }

    public static func log10(_ x: Double) -> Double {
        ln(x) / ln10
    }
}
