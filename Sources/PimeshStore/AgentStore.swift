import PimeshCore

/// Registry persistence on top of `Database`. Writes take a `Connection` so that the lead's
/// group-commit writer can put many of them in one transaction.
public struct AgentStore: Sendable {
    public let database: Database

    public init(database: Database) {
        self.database = database
    }

    public static func insert(_ agent: AgentRow, in connection: Connection) throws {
        try connection.run(
            "INSERT INTO agents (id, name, class, capabilities, secret, registered_at_ms, self_registered) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                .text(agent.id.description), .text(agent.name), .text(agent.agentClass.rawValue),
                .text(agent.capabilities.joined(separator: ",")), .blob(agent.secret), .integer(agent.registeredAtMs),
                agent.selfRegistered.map { .integer($0 ? 1 : 0) } ?? .null,
            ])
    }

    public static func markSelfRegistered(id: AgentID, _ selfRegistered: Bool, in connection: Connection) throws {
        try connection.run("UPDATE agents SET self_registered = ? WHERE id = ?", [.integer(selfRegistered ? 1 : 0), .text(id.description)])
    }

    /// An operator removed the agent for good; its checkpoint and quarantine go with it, its
    /// finished tasks keep its id as history.
    public static func delete(id: AgentID, in connection: Connection) throws {
        try connection.run("DELETE FROM agents WHERE id = ?", [.text(id.description)])
    }

    /// A manifest changed the class or capabilities of an agent it names.
    public static func updateProfile(id: AgentID, agentClass: AgentClass, capabilities: [String], in connection: Connection) throws {
        try connection.run(
            "UPDATE agents SET class = ?, capabilities = ? WHERE id = ?",
            [.text(agentClass.rawValue), .text(capabilities.joined(separator: ",")), .text(id.description)])
    }

    public static func upsert(_ checkpoint: AgentCheckpoint, in connection: Connection) throws {
        try connection.run(
            """
            INSERT INTO agent_checkpoints (agent_id, at_ms, last_iteration, state, latency_ms, queue_depth, score, reliability, drift)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(agent_id) DO UPDATE SET at_ms = excluded.at_ms, last_iteration = excluded.last_iteration,
                state = excluded.state, latency_ms = excluded.latency_ms, queue_depth = excluded.queue_depth,
                score = excluded.score, reliability = excluded.reliability, drift = excluded.drift
            """,
            [
                .text(checkpoint.agentID.description), .integer(checkpoint.atMs),
                .integer(Int64(bitPattern: checkpoint.lastIteration)), .integer(Int64(checkpoint.state.rawValue)),
                .real(checkpoint.latencyMs), .integer(Int64(checkpoint.queueDepth)), .integer(Int64(checkpoint.score)),
                .real(checkpoint.reliability), .real(checkpoint.drift),
            ])
    }

    /// Every registered agent, in registration order. A row this pimesh cannot read (a class
    /// it does not know, a damaged id) is reported, not silently skipped.
    public func loadAgents() throws -> [AgentRow] {
        try database.read { connection in
            try connection.query(
                "SELECT id, name, class, capabilities, secret, registered_at_ms, self_registered FROM agents ORDER BY registered_at_ms, id"
            ) { row in
                let idText = row.text(0)
                guard let id = AgentID(idText) else {
                    throw StoreError(code: 0, message: "agent id '\(idText)' is not a UUID", context: "load agents")
                }
                let classText = row.text(2)
                guard let agentClass = AgentClass(rawValue: classText) else {
                    throw StoreError(code: 0, message: "agent \(idText) has unknown class '\(classText)'", context: "load agents")
                }
                let capabilities = row.text(3).split(separator: ",").map(String.init)
                return AgentRow(
                    id: id, name: row.text(1), agentClass: agentClass, capabilities: capabilities,
                    secret: row.blob(4), registeredAtMs: row.int64(5), selfRegistered: row.isNull(6) ? nil : row.int(6) != 0)
            }
        }
    }

    public func loadCheckpoints() throws -> [AgentID: AgentCheckpoint] {
        let rows = try database.read { connection in
            try connection.query(
                "SELECT agent_id, at_ms, last_iteration, state, latency_ms, queue_depth, score, reliability, drift FROM agent_checkpoints"
            ) { row -> AgentCheckpoint? in
                guard let id = AgentID(row.text(0)), let state = TrinaryState(rawValue: Int8(clamping: row.int(3))) else {
                    return nil
                }
                return AgentCheckpoint(
                    agentID: id, atMs: row.int64(1), lastIteration: UInt64(bitPattern: row.int64(2)), state: state,
                    latencyMs: row.double(4), queueDepth: row.int(5), score: row.int(6), reliability: row.double(7),
                    drift: row.double(8))
            }
        }
        var result: [AgentID: AgentCheckpoint] = [:]
        for case let checkpoint? in rows {
            result[checkpoint.agentID] = checkpoint
        }
        return result
    }
}
