/// Walks a parsed JSON object key by key: every read names its dotted key path, and keys
/// nobody read are rejected by name, so a typo never silently falls back to a default.
struct ConfigReader {
    let file: String
    let lines: [Substring]
    let path: String
    let object: [String: JSONValue]
    private let searchFromLine: Int

    init(file: String, text: String, path: String, value: JSONValue, searchFromLine: Int = 0) throws(ConfigError) {
        self.file = file
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        self.path = path
        self.searchFromLine = searchFromLine
        guard case .object(let object) = value else {
            throw ConfigError(file: file, key: path, line: nil, reason: "must be an object, not \(value.typeName)")
        }
        self.object = object
    }

    /// The whole file: parsed as JSON (a syntax error names the file) and read from its root.
    init(file: String, text: String) throws(ConfigError) {
        let value: JSONValue
        do {
            value = try JSONValue.parse(Array(text.utf8))
        } catch {
            throw ConfigError(file: file, key: "", line: error.line, column: error.column, reason: "not valid JSON: " + error.message)
        }
        try self.init(file: file, text: text, path: "", value: value)
    }

    private init(parent: ConfigReader, key: String, value: JSONValue, path: String? = nil) throws(ConfigError) {
        self.file = parent.file
        self.lines = parent.lines
        self.path = path ?? parent.keyPath(key)
        self.searchFromLine = (parent.line(of: key) ?? 1) - 1
        guard case .object(let object) = value else {
            throw ConfigError(file: parent.file, key: self.path, line: parent.line(of: key), reason: "must be an object, not \(value.typeName)")
        }
        self.object = object
    }

    func keyPath(_ key: String) -> String {
        path.isEmpty ? key : path + "." + key
    }

    /// The 1-based line where `"key"` first appears at or after this object's own line.
    /// The line where `key` is written as a key of this object (`"key"` then `:`, not nested
    /// deeper, not in a string): the same text as a value, or as a key of an object inside this
    /// one, placed errors on the wrong line. Where the object's extent cannot be told (it opens
    /// on a line shared with its parent), the first line with `"key":` on it.
    @_optimize(size)  // cold: configuration files, read at start and on a reload (the 25 MB budget)
    func line(of key: String) -> Int? {
        let needle = Array("\"\(key)\"".utf8)
        func isKey(_ bytes: [UInt8], at index: Int) -> Bool {
            guard bytes[index...].starts(with: needle) else { return false }
            return bytes[(index + needle.count)...].drop(while: { $0 == 0x20 || $0 == 0x09 }).first == UInt8(ascii: ":")
        }
        var depth = 0
        var inString = false
        var escaped = false
        scan: for index in searchFromLine..<lines.count {
            let bytes = Array(lines[index].utf8)
            for position in bytes.indices {
                let byte = bytes[position]
                if inString {
                    if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""):
                    if depth == 1, isKey(bytes, at: position) { return index + 1 }
                    inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth <= 0 { break scan }
                default: break
                }
            }
        }
        for index in searchFromLine..<lines.count {
            let bytes = Array(lines[index].utf8)
            if bytes.indices.contains(where: { bytes[$0] == UInt8(ascii: "\"") && isKey(bytes, at: $0) }) { return index + 1 }
        }
        return nil
    }

    /// A file's bytes as text, refused where they are not UTF-8: decoded leniently, a bad byte
    /// became U+FFFD and reached an agent's argv as such.
    static func text(of bytes: [UInt8], file: String) throws(ConfigError) -> String {
        var iterator = bytes.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: return String(decoding: bytes, as: UTF8.self)
            case .error:
                let before = bytes[..<offset]
                let line = before.count { $0 == 0x0A } + 1
                let column = offset - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
                throw ConfigError(
                    file: file, key: "", line: line, column: column,
                    reason: "not UTF-8: byte 0x\(String(bytes[offset], radix: 16, uppercase: true)) at offset \(offset)")
            }
        }
    }

    /// A NUL ends a C string: "sleep\u0000junk" ran sleep, and an env value was cut short.
    func refuseNUL(_ text: String, key: String, entry: Int? = nil) throws(ConfigError) {
        guard text.utf8.contains(0) else { return }
        throw error(key, (entry.map { "entry \($0) " } ?? "") + "must not contain a NUL character (\\u0000)")
    }

    func error(_ key: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, key: keyPath(key), line: line(of: key), reason: reason)
    }

    func rejectUnknownKeys(allowed: Set<String>) throws(ConfigError) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            let known = allowed.sorted().joined(separator: ", ")
            throw error(key, "unknown key (known keys here: \(known))")
        }
    }

    /// An array of objects, each read as `key[i]`; nil when absent.
    @_optimize(size)  // cold: configuration files, read at start and on a reload (the 25 MB budget)
    func objects(_ key: String) throws(ConfigError) -> [ConfigReader]? {
        guard let value = object[key] else { return nil }
        guard case .array(let items) = value else {
            throw error(key, "must be an array of objects, not \(value.typeName)")
        }
        var readers: [ConfigReader] = []
        for (index, item) in items.enumerated() {
            readers.append(try ConfigReader(parent: self, key: key, value: item, path: keyPath(key) + "[\(index)]"))
        }
        return readers
    }

    func section(_ key: String) throws(ConfigError) -> ConfigReader? {
        guard let value = object[key] else { return nil }
        return try ConfigReader(parent: self, key: key, value: value)
    }

    func string(_ key: String, nonEmpty: Bool = true) throws(ConfigError) -> String? {
        guard let value = object[key] else { return nil }
        guard case .string(let text) = value else { throw error(key, "must be a string, not \(value.typeName)") }
        if nonEmpty && text.isEmpty { throw error(key, "must not be empty") }
        try refuseNUL(text, key: key)
        return text
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = object[key] else { return nil }
        guard case .bool(let flag) = value else { throw error(key, "must be true or false, not \(value.typeName)") }
        return flag
    }

    func double(_ key: String, in range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        guard let value = object[key] else { return nil }
        guard case .number(let number) = value, number.isFinite else {
            throw error(key, "must be a number, not \(value.typeName)")
        }
        guard range.contains(number) else {
            throw error(key, "\(number) is out of range \(range.lowerBound)…\(range.upperBound)")
        }
        return number
    }

    @_optimize(size)  // cold: configuration files, read at start and on a reload (the 25 MB budget)
    func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let value = object[key] else { return nil }
        guard case .number(let number) = value, number.rounded() == number, abs(number) < 1e15 else {
            if case .number(let number) = value, number.rounded() == number {
                throw error(key, "\(number) is out of range \(range.lowerBound)…\(range.upperBound)")
            }
            throw error(key, "must be a whole number, not \(value.typeName == "a number" ? "a fraction" : value.typeName)")
        }
        let whole = Int(number)
        guard range.contains(whole) else {
            throw error(key, "\(whole) is out of range \(range.lowerBound)…\(range.upperBound)")
        }
        return whole
    }
}
