import FoundationEssentials

/// Any JSON document, decoded without a schema, so that validation can name the exact key or
/// field that is wrong (unknown keys in the config, a bad field in an API body).
public enum JSONValue: Decodable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Parses bytes strictly (no duplicate keys, no trailing commas); the error names the line
    /// and column and what was expected there.
    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        try StrictJSONParser.parse(bytes)
    }

    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

public struct JSONParseError: Error, CustomStringConvertible {
    public var message: String
    /// 1-based; a duplicate key has a line and no column.
    public var line: Int?
    public var column: Int?

    /// "line 3, column 7: expected ',' or '}' …": what a person needs to find the mistake.
    public var description: String {
        let place = [line.map { "line \($0)" }, column.map { "column \($0)" }].compactMap { $0 }.joined(separator: ", ")
        return "not valid JSON: " + (place.isEmpty ? message : "\(place): \(message)")
    }
}
