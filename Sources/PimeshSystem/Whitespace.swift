/// Config files, tokens and /proc lines end in a newline or carry padding; Foundation's trimming is not here.
extension String {
    public func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}

extension Substring {
    public func trimmingWhitespace() -> String {
        String(self).trimmingWhitespace()
    }
}
