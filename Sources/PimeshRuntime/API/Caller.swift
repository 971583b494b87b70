import PimeshCore
import PimeshServer

/// Who made an API request (docs/api.md "Who may call what").
enum Caller: Sendable, Equatable {
    case anonymous
    /// The operator token, or a peer on the unix socket that is root, the lead's user or in the
    /// `pimesh` group: `via` says which ("token", "uid 1000").
    case `operator`(via: String)
    /// The join token: may register an attached agent, nothing else.
    case join
    /// An agent's own credential: its own work, results and answers only.
    case agent(AgentID)

    var isOperator: Bool {
        if case .operator = self { return true }
        return false
    }

    /// How events and logs name the caller of an action.
    var label: String {
        switch self {
        case .anonymous: "anonymous"
        case .operator(let via): "operator (\(via))"
        case .join: "join token"
        case .agent(let id): "agent \(id)"
        }
    }

    /// Operators may act for any agent; an agent only for itself.
    func require(actingFor agent: AgentID, field: String) throws(APIError) {
        if let own = try ownAgentOnly(), own != agent { throw Self.notItsOwn(field: field) }
    }

    /// The one agent this caller may act for, nil for an operator (any). Asked before a route
    /// looks its `:id` up: otherwise an agent's or the join token's 403 against 404 and 409 told
    /// which names and id prefixes exist, and a 403 named the id behind a name (helper probe).
    func ownAgentOnly() throws(APIError) -> AgentID? {
        switch self {
        case .operator: return nil
        case .agent(let own): return own
        default: throw APIError(status: .forbidden, message: "this route needs the operator token or the agent's own credential")
        }
    }

    static func notItsOwn(field: String) -> APIError {
        APIError(status: .forbidden, message: "an agent's credential may act only for that agent", field: field)
    }
}
