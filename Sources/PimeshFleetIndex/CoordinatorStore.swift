import PimeshCore
import PimeshSnapshot
import PimeshStore

/// The coordinator's index (`<dir>/coordinator.db`): enrolled nodes and the snapshots received
/// from each. The snapshot files themselves live in `<dir>/nodes/<node_id>/`.
public struct CoordinatorStore: Sendable {
    public let database: Database

    public static let migrations = [
        Migration(version: 1, statements: [
            """
            CREATE TABLE nodes (
                node_id TEXT PRIMARY KEY,
                public_key TEXT NOT NULL UNIQUE,
                enrolled_at_ms INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE snapshots (
                node_id TEXT NOT NULL REFERENCES nodes(node_id),
                sequence INTEGER NOT NULL,
                created_at_ms INTEGER NOT NULL,
                received_at_ms INTEGER NOT NULL,
                raw_bytes INTEGER NOT NULL,
                compressed_bytes INTEGER NOT NULL,
                compressed_sha256 TEXT NOT NULL,
                node_score INTEGER,
                path TEXT NOT NULL,
                PRIMARY KEY (node_id, sequence)
            )
            """,
        ]),
        // Every audit head a node's snapshots carried (docs/audit.md): kept even when the
        // snapshot itself is gone, so that `pimesh audit verify --heads-from` can check a node's
        // chain against what left the node.
        Migration(version: 2, statements: [
            """
            CREATE TABLE audit_heads (
                node_id TEXT NOT NULL REFERENCES nodes(node_id),
                seq INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                at_ms INTEGER NOT NULL,
                signature TEXT NOT NULL,
                received_at_ms INTEGER NOT NULL,
                PRIMARY KEY (node_id, seq)
            )
            """,
        ]),
        // Incidents the nodes push when they open and change (docs/incidents.md), newest
        // `incidentsPerNode` per node.
        Migration(version: 3, statements: [
            """
            CREATE TABLE incidents (
                node_id TEXT NOT NULL REFERENCES nodes(node_id),
                incident_id INTEGER NOT NULL,
                opened_ms INTEGER NOT NULL,
                severity TEXT NOT NULL,
                state TEXT NOT NULL,
                title TEXT NOT NULL,
                body TEXT NOT NULL,
                received_at_ms INTEGER NOT NULL,
                PRIMARY KEY (node_id, incident_id)
            )
            """,
        ]),
        // The newest sequence retention let go, per node: a sequence at or below it is answered
        // without reading its body (once pruned, it would otherwise be received and verified
        // again on each resend, and could land with other content than it once had).
        Migration(version: 4, statements: [
            "ALTER TABLE nodes ADD COLUMN pruned_through INTEGER NOT NULL DEFAULT 0",
        ]),
    ]

    public static let incidentsPerNode = 500

    public init(database: Database) {
        self.database = database
    }

    public init(path: String) throws {
        database = try Database(path: path, migrations: Self.migrations)
    }

    /// Enrolls a node by its public key; returns its node id. Enrolling twice is harmless.
    @discardableResult
    public func enroll(publicKey: String, atMs: Int64) throws -> String {
        let nodeID = NodeKey.nodeID(publicKeyHex: publicKey)
        try database.withConnection { connection in
            try connection.run(
                "INSERT INTO nodes (node_id, public_key, enrolled_at_ms) VALUES (?, ?, ?) ON CONFLICT(node_id) DO NOTHING",
                [.text(nodeID), .text(publicKey), .integer(atMs)])
        }
        return nodeID
    }

    public func publicKey(of nodeID: String) throws -> String? {
        try database.withConnection { connection in
            try connection.query("SELECT public_key FROM nodes WHERE node_id = ?", [.text(nodeID)]) { $0.text(0) }.first
        }
    }

    /// Every enrolled node's public key: what `snapshot verify|restore --coordinator-dir` trusts.
    public func enrolledKeys() throws -> [String] {
        try database.withConnection { connection in
            try connection.query("SELECT public_key FROM nodes ORDER BY node_id", []) { $0.text(0) }.compactMap { $0 }
        }
    }

    /// The SHA-256 already recorded for this node and sequence, if any.
    public func received(nodeID: String, sequence: UInt64) throws -> String? {
        try database.withConnection { connection in
            try connection.query(
                "SELECT compressed_sha256 FROM snapshots WHERE node_id = ? AND sequence = ?", [.text(nodeID), .integer(Int64(sequence))]
            ) { $0.text(0) }.first
        }
    }

    public func record(_ manifest: SnapshotManifest, path: String, receivedAtMs: Int64) throws {
        try database.transaction { connection in
            try connection.run(
                """
                INSERT INTO snapshots (node_id, sequence, created_at_ms, received_at_ms, raw_bytes, compressed_bytes,
                                       compressed_sha256, node_score, path)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(manifest.nodeID), .integer(Int64(manifest.sequence)), .integer(manifest.createdAtMs), .integer(receivedAtMs),
                    .integer(Int64(manifest.rawBytes)), .integer(Int64(manifest.compressedBytes)), .text(manifest.compressedSHA256),
                    manifest.nodeScore.map { .integer(Int64($0)) } ?? .null, .text(path),
                ])
            // The manifest's signature (checked by the caller) covers the head; a second head
            // for the same row is kept only if it agrees, so a conflict stays visible.
            if let head = manifest.auditHead {
                try connection.run(
                    "INSERT OR IGNORE INTO audit_heads (node_id, seq, sha256, at_ms, signature, received_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    [.text(manifest.nodeID), .integer(head.seq), .text(head.sha256), .integer(head.atMs), .text(head.signature), .integer(receivedAtMs)])
            }
        }
    }

    /// The audit heads received from a node, oldest first.
    public func auditHeads(of nodeID: String) throws -> [AuditHead] {
        try database.withConnection { connection in
            try connection.query("SELECT seq, sha256, at_ms, signature FROM audit_heads WHERE node_id = ? ORDER BY seq", [.text(nodeID)]) {
                AuditHead(seq: $0.int64(0), sha256: $0.text(1), atMs: $0.int64(2), signature: $0.text(3))
            }
        }
    }

    /// Files a node's incident; false (and nothing changed) when the index holds a later version
    /// of it. Every change the node makes adds a timeline entry, so the entries it ever had
    /// (kept and dropped) count its versions, whatever its clock did; and a resolved incident
    /// stays resolved.
    public func saveIncident(nodeID: String, _ incident: Incident, body: String, receivedAtMs: Int64) throws -> Bool {
        try database.transaction { connection in
            let held = try connection.query(
                """
                SELECT state, COALESCE(json_array_length(body, '$.timeline'), 0) + COALESCE(json_extract(body, '$.timeline_dropped'), 0)
                FROM incidents WHERE node_id = ? AND incident_id = ?
                """,
                [.text(nodeID), .integer(incident.id)]
            ) { (state: $0.text(0), version: $0.int64(1)) }.first
            if let held {
                // Saturating: the caller refuses counts no lead writes, this keeps a bad one harmless.
                let (sum, overflow) = incident.timeline.count.addingReportingOverflow(incident.timelineDropped)
                let version = overflow ? Int64.max : Int64(sum)
                if held.version > version || (held.state == IncidentState.resolved.rawValue && incident.state != .resolved) { return false }
            }
            do {
                try connection.run(
                    """
                    INSERT INTO incidents (node_id, incident_id, opened_ms, severity, state, title, body, received_at_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (node_id, incident_id) DO UPDATE SET opened_ms = excluded.opened_ms, severity = excluded.severity,
                        state = excluded.state, title = excluded.title, body = excluded.body, received_at_ms = excluded.received_at_ms
                    """,
                    [
                        .text(nodeID), .integer(incident.id), .integer(incident.openedMs), .text(incident.severity.description),
                        .text(incident.state.rawValue), .text(incident.title), .text(body), .integer(receivedAtMs),
                    ])
                try connection.run(
                    """
                    DELETE FROM incidents WHERE node_id = ? AND incident_id NOT IN
                        (SELECT incident_id FROM incidents WHERE node_id = ? ORDER BY incident_id DESC LIMIT ?)
                    """, [.text(nodeID), .text(nodeID), .integer(Int64(Self.incidentsPerNode))])
            }
            return true
        }
    }

    /// The newest `limit` incidents across the fleet. An incident is no newer than when it
    /// arrived: a node whose clock runs years ahead would otherwise keep every other node's
    /// incidents out of the list.
    public func incidents(limit: Int) throws -> [FleetIncident] {
        try database.withConnection { connection in
            try connection.query(
                """
                SELECT node_id, incident_id, opened_ms, severity, state, title, received_at_ms FROM incidents
                ORDER BY min(opened_ms, received_at_ms) DESC LIMIT ?
                """,
                [.integer(Int64(limit))]
            ) { row in
                FleetIncident(
                    nodeID: row.text(0), id: row.int64(1), name: Incident.name(row.int64(1)), openedMs: row.int64(2), severity: row.text(3),
                    state: row.text(4), title: row.text(5), receivedAtMs: row.int64(6))
            }
        }
    }

    public func fleet(nowMs: Int64) throws -> [FleetNode] {
        try database.withConnection { connection in
            try connection.query(
                """
                SELECT n.node_id, n.public_key, n.enrolled_at_ms, s.sequence, s.created_at_ms, s.compressed_bytes, s.raw_bytes,
                       s.node_score, (SELECT count(*) FROM snapshots c WHERE c.node_id = n.node_id)
                FROM nodes n LEFT JOIN snapshots s ON s.node_id = n.node_id
                    AND s.sequence = (SELECT max(sequence) FROM snapshots m WHERE m.node_id = n.node_id)
                ORDER BY n.node_id
                """
            ) { row in
                FleetNode(
                    nodeID: row.text(0), publicKey: row.text(1), enrolledAtMs: row.int64(2),
                    lastSequence: row.isNull(3) ? nil : UInt64(row.int64(3)), lastCreatedAtMs: row.isNull(4) ? nil : row.int64(4),
                    // In Double: a row written before created_at_ms was checked may hold any Int64.
                    ageS: row.isNull(4) ? nil : (Double(nowMs) - Double(row.int64(4))) / 1000,
                    compressedBytes: row.isNull(5) ? nil : UInt64(row.int64(5)), rawBytes: row.isNull(6) ? nil : UInt64(row.int64(6)),
                    nodeScore: row.isNull(7) ? nil : row.int(7), snapshots: row.int(8))
            }
        }
    }
}

/// One incident in `GET /v1/incidents` on the coordinator.
public struct FleetIncident: Codable, Sendable, Equatable {
    public var nodeID: String
    public var id: Int64
    public var name: String
    public var openedMs: Int64
    public var severity: String
    public var state: String
    public var title: String
    public var receivedAtMs: Int64

    enum CodingKeys: String, CodingKey {
        case nodeID = "nodeId"
        case id, name, openedMs, severity, state, title, receivedAtMs
    }
}

/// `GET /v1/incidents` and `pimesh-coordinator incidents`: groups of incidents that started
/// within 60 s of each other on different nodes, newest first; a lone incident is a group of one.
public struct FleetIncidentList: Codable, Sendable {
    public var groups: [[FleetIncident]]

    public init(groups: [[FleetIncident]]) {
        self.groups = groups
    }
}

/// One node in `GET /v1/nodes` and `pimesh-coordinator nodes`.
public struct FleetNode: Codable, Sendable, Equatable {
    public var nodeID: String
    public var publicKey: String
    public var enrolledAtMs: Int64
    public var lastSequence: UInt64?
    public var lastCreatedAtMs: Int64?
    public var ageS: Double?
    public var compressedBytes: UInt64?
    public var rawBytes: UInt64?
    public var nodeScore: Int?
    public var snapshots: Int

    enum CodingKeys: String, CodingKey {
        case nodeID = "nodeId"
        case publicKey, enrolledAtMs, lastSequence, lastCreatedAtMs, ageS, compressedBytes, rawBytes, nodeScore, snapshots
    }
}

public struct FleetList: Codable, Sendable {
    public var nodes: [FleetNode]

    public init(nodes: [FleetNode]) {
        self.nodes = nodes
    }
}

/// `GET /v1/nodes/{node}/audit-heads` on the coordinator, and the file `pimesh audit verify
/// --heads-from FILE` reads.
public struct AuditHeadList: Codable, Sendable {
    public var nodeID: String
    public var publicKey: String
    public var heads: [AuditHead]

    enum CodingKeys: String, CodingKey {
        case nodeID = "nodeId"
        case publicKey, heads
    }

    public init(nodeID: String, publicKey: String, heads: [AuditHead]) {
        self.nodeID = nodeID
        self.publicKey = publicKey
        self.heads = heads
    }
}
