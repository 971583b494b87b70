import PimeshServer
import PimeshSystem

/// A JSON body or header that decoding refused, as a 400 that names the field in the API's
/// snake_case (`audit_head.at_ms`, `timeline[3].kind`), where `try?` once answered only that
/// something was wrong.
enum DecodingProblem {
    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws -> T {
        do {
            return try APICoding.decode(type, from: bytes)
        } catch {
            throw answer(error, what: what)
        }
    }

    static func answer(_ error: any Error, what: String) -> APIError {
        guard let error = error as? DecodingError else {
            return APIError(status: .badRequest, message: "\(what) is not JSON: \(error)")
        }
        func path(_ keys: [any CodingKey]) -> String {
            keys.reduce("") { path, key in
                if let index = key.intValue { return path + "[\(index)]" }
                return (path.isEmpty ? "" : path + ".") + snakeCase(key.stringValue)
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath + [key])
            return APIError(status: .badRequest, message: "\(what) has no \(field)", field: field)
        case .valueNotFound(let type, let context):
            let field = path(context.codingPath)
            return APIError(status: .badRequest, message: "\(what): \(field) is null, not \(typeName(type))", field: field)
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return APIError(status: .badRequest, message: "\(what): \(field) is not \(typeName(type))", field: field)
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return APIError(status: .badRequest, message: "\(what) is not JSON: \(context.debugDescription)")
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            return APIError(status: .badRequest, message: "\(what): \(field): \(context.debugDescription)", field: field)
        @unknown default:
            return APIError(status: .badRequest, message: "\(what) is not what was expected: \(error)")
        }
    }

    /// `createdAtMs` → `created_at_ms`, `nodeId` → `node_id`, `rawSha256` → `raw_sha256`: the
    /// decoder's coding keys are the Swift names.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is Int64.Type, is UInt64.Type, is Int32.Type: "a whole number"
        case is Double.Type: "a number"
        default: "of the right kind (\(type))"
        }
    }
}
