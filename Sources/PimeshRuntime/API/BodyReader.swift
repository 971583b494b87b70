import PimeshServer

/// Reads a JSON object body field by field; every failure names the field and what was wrong.
struct BodyReader {
    let fields: [String: JSONValue]
    /// Prefix for nested objects ("conflict.type").
    let path: String

    init(_ body: JSONValue, allowed: [String], path: String = "") throws(APIError) {
        let label = path.isEmpty ? "the body" : "\"\(path)\""
        guard case .object(let fields) = body else {
            throw .badRequest("\(label) must be a JSON object, not \(body.typeName)", field: path.isEmpty ? nil : path)
        }
        for key in fields.keys.sorted() where !allowed.contains(key) {
            throw .badRequest(
                "unknown field \"\(Self.join(path, key))\" (known: \(allowed.joined(separator: ", ")))", field: Self.join(path, key))
        }
        self.fields = fields
        self.path = path
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : path + "." + key
    }

    func name(_ key: String) -> String { Self.join(path, key) }

    func string(_ key: String, required: Bool = false, maxBytes: Int) throws(APIError) -> String? {
        guard let value = fields[key], value != .null else {
            if required { throw .badRequest("\"\(name(key))\" is required", field: name(key)) }
            return nil
        }
        guard case .string(let text) = value else {
            throw .badRequest("\"\(name(key))\" must be a string, not \(value.typeName)", field: name(key))
        }
        guard text.utf8.count <= maxBytes else {
            throw .badRequest("\"\(name(key))\" is \(text.utf8.count) bytes; at most \(maxBytes) are allowed", field: name(key))
        }
        return text
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let value = fields[key], value != .null else { return nil }
        guard case .number(let number) = value, number.isFinite else {
            throw .badRequest("\"\(name(key))\" must be a number, not \(value.typeName)", field: name(key))
        }
        guard range.contains(number) else {
            throw .badRequest("\"\(name(key))\" must be between \(Self.format(range.lowerBound)) and \(Self.format(range.upperBound)), not \(Self.format(number))", field: name(key))
        }
        return number
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = fields[key], value != .null else { return nil }
        guard case .bool(let flag) = value else {
            throw .badRequest("\"\(name(key))\" must be true or false, not \(value.typeName)", field: name(key))
        }
        return flag
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let number = try number(key, in: Double(range.lowerBound)...Double(range.upperBound)) else { return nil }
        guard number == number.rounded() else {
            throw .badRequest("\"\(name(key))\" must be a whole number, not \(number)", field: name(key))
        }
        return Int(number)
    }

    func object(_ key: String, allowed: [String]) throws(APIError) -> BodyReader? {
        guard let value = fields[key], value != .null else { return nil }
        return try BodyReader(value, allowed: allowed, path: name(key))
    }

    /// An identifier-like string: capability names, idempotency keys.
    func identifier(_ key: String, required: Bool = false, maxBytes: Int = 64) throws(APIError) -> String? {
        guard let text = try string(key, required: required, maxBytes: maxBytes) else { return nil }
        guard RegistrationRequest.isIdentifier(text, allowUppercase: true) else {
            throw .badRequest("\"\(name(key))\" must be 1–\(maxBytes) characters of letters, digits, '.', '_' or '-'", field: name(key))
        }
        return text
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
