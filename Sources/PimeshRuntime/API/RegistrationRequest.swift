import PimeshCore
import PimeshServer

/// A validated `POST /v1/agents` body. Every rule names the field it checks.
struct RegistrationRequest: Equatable {
    var name: String
    var agentClass: AgentClass
    var capabilities: [String]

    static let maxNameLength = 64
    static let maxCapabilities = 32

    static func validate(_ body: JSONValue) throws(APIError) -> RegistrationRequest {
        guard case .object(let fields) = body else {
            throw .badRequest("the body must be a JSON object, not \(body.typeName)")
        }
        for key in fields.keys.sorted() where !["name", "class", "capabilities"].contains(key) {
            throw .badRequest("unknown field \"\(key)\" (known: name, class, capabilities)", field: key)
        }
        guard let nameValue = fields["name"] else {
            throw .badRequest("\"name\" is required", field: "name")
        }
        guard case .string(let name) = nameValue else {
            throw .badRequest("\"name\" must be a string, not \(nameValue.typeName)", field: "name")
        }
        if let problem = nameProblem(name) { throw .badRequest("\"name\" \(problem)", field: "name") }
        var agentClass = AgentClass.local
        if let classValue = fields["class"] {
            guard case .string(let text) = classValue else {
                throw .badRequest("\"class\" must be a string, not \(classValue.typeName)", field: "class")
            }
            guard let parsed = AgentClass(name: text) else {
                let known = AgentClass.allCases.map(\.rawValue).joined(separator: ", ")
                throw .badRequest("\"class\" \"\(text)\" is not one of \(known)", field: "class")
            }
            agentClass = parsed
        }
        var capabilities: [String] = []
        if let value = fields["capabilities"] {
            guard case .array(let items) = value else {
                throw .badRequest("\"capabilities\" must be an array of strings, not \(value.typeName)", field: "capabilities")
            }
            guard items.count <= maxCapabilities else {
                throw .badRequest("\"capabilities\" may hold at most \(maxCapabilities) entries", field: "capabilities")
            }
            for (index, item) in items.enumerated() {
                guard case .string(let capability) = item, isIdentifier(capability, allowUppercase: false),
                    capability.utf8.count <= maxNameLength
                else {
                    throw .badRequest(
                        "\"capabilities\"[\(index)] must be 1–\(maxNameLength) characters of a–z, 0–9, '.', '_' or '-'",
                        field: "capabilities")
                }
                if !capabilities.contains(capability) { capabilities.append(capability) }
            }
        }
        return RegistrationRequest(name: name, agentClass: agentClass, capabilities: capabilities)
    }

    /// What is wrong with an agent's name, for a registration and a manifest alike. A name in the
    /// form of an id would be taken for the agent with that id by every lookup (a helper probe's
    /// `pimesh agents remove <a name that was another agent's id in capitals>` removed that other).
    static func nameProblem(_ name: String) -> String? {
        guard isIdentifier(name, allowUppercase: true), name.utf8.count <= maxNameLength else {
            return "must be 1–\(maxNameLength) characters of letters, digits, '.', '_' or '-'"
        }
        return AgentID(name) == nil ? nil : "may not have the form of an agent id (a UUID)"
    }

    static func isIdentifier(_ text: String, allowUppercase: Bool) -> Bool {
        !text.isEmpty
            && text.utf8.allSatisfy { c in
                (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                    || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
                    || (allowUppercase && c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            }
    }
}
