/// Text that someone else chose (an upstream's answer, a node's incident title), made fit for a
/// log line or a terminal: at most `limit` characters, and control characters shown as
/// `\u{1B}`, so that it cannot forge a line of a log or drive the terminal it is printed on.
public enum PrintableText {
    public static func of(_ text: String, limit: Int = 300) -> String {
        var out = ""
        for (index, scalar) in text.unicodeScalars.enumerated() {
            if index == limit { return out + "…" }
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
