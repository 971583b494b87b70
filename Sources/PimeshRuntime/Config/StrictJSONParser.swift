/// RFC 8259 JSON, read strictly and with the place of every mistake: a config or manifest that
/// a person edits by hand must not load with a key silently dropped (a duplicate, first wins)
/// or a comma that another tool rejects, and "not valid JSON" alone leaves them searching.
struct StrictJSONParser {
    /// Deeper documents are refused: the lead's own documents are a few levels deep, and an API
    /// body nested thousands deep would otherwise exhaust the stack.
    static let maxDepth = 64

    private let bytes: [UInt8]
    private var index = 0
    private var line = 1
    private var lineStart = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte-order mark is what some Windows editors put first; it carries no data.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3; lineStart = 3 }
    }

    static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var parser = StrictJSONParser(bytes)
        parser.skipWhitespace()
        guard parser.index < bytes.count else { throw parser.failure("the document is empty; expected a JSON value") }
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else {
            throw parser.failure("expected the end of the document after the value, found \(parser.found)")
        }
        return value
    }

    // MARK: - Values

    private mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < Self.maxDepth else { throw failure("nested deeper than \(Self.maxDepth) levels") }
        guard index < bytes.count else { throw failure("expected a value, found the end of the document") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw failure("expected a value (object, array, string, number, true, false or null), found \(found)")
        }
    }

    private mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1
        var members: [String: JSONValue] = [:]
        var firstLine: [String: Int] = [:]
        skipWhitespace()
        if peek == UInt8(ascii: "}") { index += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else {
                if peek == UInt8(ascii: "}") { throw failure("trailing comma before '}'; remove the last ','") }
                throw failure("expected a key in double quotes, found \(found)")
            }
            let keyLine = line
            let key = try string()
            if let earlier = firstLine[key] {
                throw JSONParseError(
                    message: "duplicate key \"\(key)\" (first at line \(earlier)); each key may appear once", line: keyLine,
                    column: nil)
            }
            firstLine[key] = keyLine
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { throw failure("expected ':' after the key \"\(key)\", found \(found)") }
            index += 1
            skipWhitespace()
            members[key] = try value(depth: depth + 1)
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"): index += 1; return .object(members)
            default: throw failure("expected ',' or '}' after the value of \"\(key)\", found \(found)")
            }
        }
    }

    private mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if peek == UInt8(ascii: "]") { index += 1; return .array(items) }
        while true {
            skipWhitespace()
            if peek == UInt8(ascii: "]") { throw failure("trailing comma before ']'; remove the last ','") }
            items.append(try value(depth: depth + 1))
            skipWhitespace()
            switch peek {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"): index += 1; return .array(items)
            default: throw failure("expected ',' or ']' after an array item, found \(found)")
            }
        }
    }

    private mutating func literal(_ word: String) throws(JSONParseError) {
        let expected = Array(word.utf8)
        guard bytes.count - index >= expected.count, Array(bytes[index..<index + expected.count]) == expected else {
            throw failure("expected \(word), found \(found)")
        }
        index += expected.count
    }

    private mutating func number() throws(JSONParseError) -> Double {
        let start = index
        if peek == UInt8(ascii: "-") { index += 1 }
        guard let first = peek, isDigit(first) else { throw failure("expected a digit in the number, found \(found)") }
        index += 1
        if first == UInt8(ascii: "0"), let next = peek, isDigit(next) {
            throw failure("a number may not start with 0 followed by digits")
        }
        while let next = peek, isDigit(next) { index += 1 }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard let next = peek, isDigit(next) else { throw failure("expected a digit after the decimal point, found \(found)") }
            while let next = peek, isDigit(next) { index += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard let next = peek, isDigit(next) else { throw failure("expected a digit in the exponent, found \(found)") }
            while let next = peek, isDigit(next) { index += 1 }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let number = Double(text), number.isFinite else { throw failure("the number \(text) is too large") }
        return number
    }

    private mutating func string() throws(JSONParseError) -> String {
        index += 1
        var scalars = String.UnicodeScalarView()
        var runStart = index
        while true {
            guard index < bytes.count else { throw failure("the string is not closed; expected '\"' before the end of the document") }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                try appendRun(from: runStart, to: index, into: &scalars)
                index += 1
                return String(scalars)
            }
            if byte < 0x20 {
                throw failure(byte == 0x0A ? "the string is not closed before the end of the line" : "a control character must be escaped in a string")
            }
            if byte == UInt8(ascii: "\\") {
                try appendRun(from: runStart, to: index, into: &scalars)
                scalars.append(try escape())
                runStart = index
                continue
            }
            index += 1
        }
    }

    private func appendRun(from start: Int, to end: Int, into scalars: inout String.UnicodeScalarView) throws(JSONParseError) {
        guard start < end else { return }
        guard let text = String(validating: bytes[start..<end], as: UTF8.self) else {
            throw JSONParseError(message: "the string is not valid UTF-8", line: line, column: start - lineStart + 1)
        }
        scalars.append(contentsOf: text.unicodeScalars)
    }

    private mutating func escape() throws(JSONParseError) -> Unicode.Scalar {
        index += 1
        guard let byte = peek else { throw failure("expected an escape after '\\', found the end of the document") }
        index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let high = try hex4()
            if (0xD800...0xDBFF).contains(high) {
                guard peek == UInt8(ascii: "\\"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "u") else {
                    throw failure("a \\u escape of a high surrogate must be followed by a low one")
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw failure("expected a low surrogate after a high one") }
                return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
            }
            guard let scalar = Unicode.Scalar(high) else { throw failure("a lone low surrogate is not a character") }
            return scalar
        default:
            index -= 1
            throw failure("unknown escape '\\\(Character(Unicode.Scalar(byte)))' in a string")
        }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = peek, let digit = hexDigit(byte) else { throw failure("expected 4 hex digits after \\u, found \(found)") }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    // MARK: - Reading

    private var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0D: index += 1
            case 0x0A:
                index += 1
                line += 1
                lineStart = index
            default: return
            }
        }
    }

    /// What stands where a token was expected, as a person would name it.
    private var found: String {
        guard let byte = peek else { return "the end of the document" }
        switch byte {
        case 0x0A, 0x0D: return "the end of the line"
        case 0x20...0x7E: return "'\(Character(Unicode.Scalar(byte)))'"
        default: return "byte 0x\(String(byte, radix: 16))"
        }
    }

    /// The column counts characters, not bytes: a UTF-8 continuation byte starts none.
    private func failure(_ message: String) -> JSONParseError {
        let column = bytes[lineStart..<min(index, bytes.count)].reduce(1) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
        return JSONParseError(message: message, line: line, column: column)
    }

    private func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    private func hexDigit(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
