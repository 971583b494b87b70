/// The canonical `key=value` text of an audit row's body: pairs sorted by key, one space apart;
/// in values, bytes other than letters, digits and `-._:/@,+` are written `%XX`, so a value can
/// hold spaces, `=` or newlines and the body still splits the same way for every reader.
public enum AuditBody {
    public static func canonical(_ pairs: [(String, String)]) -> String {
        pairs.sorted { $0.0 < $1.0 }.map { "\($0.0)=\(escape($0.1))" }.joined(separator: " ")
    }

    public static func canonical(_ pairs: KeyValuePairs<String, String>) -> String {
        canonical(pairs.map { ($0.key, $0.value) })
    }

    /// The pairs of a canonical body, values unescaped; nil when it is not canonical text.
    public static func parse(_ body: String) -> [(String, String)]? {
        if body.isEmpty { return [] }
        var pairs: [(String, String)] = []
        for field in body.split(separator: " ", omittingEmptySubsequences: false) {
            guard let equals = field.firstIndex(of: "="), let value = unescape(field[field.index(after: equals)...]) else {
                return nil
            }
            pairs.append((String(field[..<equals]), value))
        }
        return pairs
    }

    static func isPlain(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "@"),
            UInt8(ascii: ","), UInt8(ascii: "+"):
            true
        default: false
        }
    }

    static func escape(_ value: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in value.utf8 {
            if isPlain(byte) {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unescape(_ text: Substring) -> String? {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let byte = bytes.popFirst() {
            if byte == UInt8(ascii: "%") {
                guard bytes.count >= 2, let hi = Hex.nibble(bytes.removeFirst()), let lo = Hex.nibble(bytes.removeFirst()) else { return nil }
                out.append(hi << 4 | lo)
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
