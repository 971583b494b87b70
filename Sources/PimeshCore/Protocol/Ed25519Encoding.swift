/// Ed25519 keys that no one should trust: with a point of small order as the public key, a
/// signature made without any private key (a small-order R and S = 0) passes RFC 8032's
/// verification; an encoding of y ≥ p is refused too, as libsodium does (y = p and p + 1
/// are two of those points in disguise, the rest are merely not canonical). An operator
/// who leaves a placeholder such as 64 zeros in `update.trusted_keys` would let anyone sign a
/// release. Checked on bytes alone, so it lives here.
public enum Ed25519Encoding {
    /// Why a 32-byte encoded point (little-endian y, x's sign in the top bit) cannot be trusted
    /// as a key or as a signature's R; nil when it is none of those.
    @_optimize(size)  // cold: config loads and signature checks (the 25 MB budget)
    public static func weakness(of point: [UInt8]) -> String? {
        guard point.count == 32 else { return "not 32 bytes" }
        var y = point
        y[31] &= 0x7f
        // y ≥ p = 2^255 − 19: 0x7f on top, 0xff below it, and at least 0xed in the lowest byte.
        if y[31] == 0x7f && y[1...30].allSatisfy({ $0 == 0xff }) && y[0] >= 0xed {
            return "it encodes y ≥ 2^255 − 19 (not canonical)"
        }
        if smallOrderY.contains(y) { return "it is a point of small order (such a key verifies signatures no one made)" }
        return nil
    }

    /// The y of the eight points of order 1, 2, 4 and 8 (two share each of the last three).
    static let smallOrderY: [[UInt8]] = [
        [1] + [UInt8](repeating: 0, count: 31),
        [0xec] + [UInt8](repeating: 0xff, count: 30) + [0x7f],
        [UInt8](repeating: 0, count: 32),
        Hex.decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")!,
        Hex.decode("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")!,
    ]
}
