/// Text that someone else chose (an upstream's answer, a node's incident title), made fit for a
/// log line or a terminal: the first `limit` characters of it, with control characters, line
/// and paragraph separators, bidirectional overrides and the backslash itself written as
/// `\u{1B}`, so that it cannot forge a line of a log, reorder what a terminal shows, or drive
/// the terminal it is printed on.
public enum PrintableText {
    /// `keepingTabs`: a tab is left as it is, for an agent's log line (Go's stack traces indent
    /// with tabs); it moves the cursor to the next stop and nothing else, but would break the
    /// columns of a table.
    public static func of(_ text: String, limit: Int = 300, keepingTabs: Bool = false) -> String {
        var out = ""
        for (index, scalar) in text.unicodeScalars.enumerated() {
            if index == limit { return out + "…" }
            switch scalar.value {
            case 0x09 where keepingTabs:
                out.unicodeScalars.append(scalar)
            case 0..<0x20, 0x5C, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069:
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// The first `limit` characters of `text`, and "…" when there were more: for a table cell,
    /// which `TextTable` makes printable itself.
    public static func clipped(_ text: String, limit: Int) -> String {
        var scalars = text.unicodeScalars
        guard scalars.count > limit else { return text }
        scalars.removeSubrange(scalars.index(scalars.startIndex, offsetBy: limit)...)
        return String(scalars) + "…"
    }
}
