import ArgumentParser
import Glibc
import Logging
import PimeshAgent
import PimeshCommandLine
import PimeshCoordinator
import PimeshCore
import PimeshFleetIndex
import PimeshSystem

@main
struct PimeshCoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pimesh-coordinator",
        abstract: "The upstream receiver of a fleet's snapshots and incidents: enrolled nodes, verified uploads.",
        discussion: """
            Run it on the machine that collects the fleet's snapshots, not on a Pi. A node is \
            enrolled by its public key (`pimesh snapshot list --json` on the node shows it, as \
            public_key) or enrolls itself with the enroll token (`pimesh coordinator join` on the \
            node); its uploads are refused until then, and whenever their signature, SHA-256 or LZ4 \
            checksum does not match. Snapshots are kept in DIR/nodes/<node_id>/, indexed in \
            DIR/coordinator.db. See docs/snapshots.md.
            """,
        version: PimeshVersion.current,
        subcommands: [Serve.self, Enroll.self, Nodes.self, Incidents.self],
        defaultSubcommand: Serve.self
    )

    struct Directory: ParsableArguments {
        /// The running coordinator of this directory, with its operator token.
        func client() throws -> LeadClient {
            let file = dir + "/" + Coordinator.endpointFile
            guard FileIO.exists(file) else {
                throw CLIFailure("no coordinator has run in \(dir) (\(Coordinator.endpointFile) is missing): start one with `pimesh-coordinator serve --dir \(dir)`")
            }
            let endpoint = try APICoding.decode(Coordinator.Endpoint.self, from: try FileIO.read(path: file))
            return LeadClient(address: .loopback(host: endpoint.host, port: endpoint.port), token: try LeadDiscovery.token(dataDir: dir))
        }

        @Option(name: .long, help: "The coordinator's directory (snapshots, index, token).")
        var dir: String = "./.pimesh-coordinator"
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "serve", abstract: "Receive snapshots until SIGTERM or SIGINT.")

        @OptionGroup var directory: Directory

        @Option(name: .long, help: "Address to listen on (the fleet's network, or 127.0.0.1).")
        var host: String = "127.0.0.1"

        @Option(name: .long, help: "Port; 0 picks a free one (written to DIR/coordinator.json).")
        var port: Int = 7430

        @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        @Option(name: .long, help: "Connections held at once (1…65536); past it new ones wait until one closes.")
        var maxConnections: Int = 256

        @Option(name: .customLong("idle-timeout-s"), help: "Close a connection that sends nothing for this many seconds (1…3600).")
        var idleTimeoutS: Int = 30

        @Option(
            name: .long,
            help: "Largest snapshot taken, compressed and as the database it holds, in bytes (1 MiB…64 GiB); 413 past it.")
        var maxSnapshotBytes: UInt64 = 4 << 30

        @Option(name: .long, help: "Each node's newest snapshots kept (1…1000000); older ones are deleted as new ones arrive.")
        var keepSnapshots: Int = 1000

        @Option(
            name: .long,
            help: "Each node's snapshots kept within this many compressed bytes, newest first (at least --max-snapshot-bytes; the newest always stays).")
        var keepBytes: UInt64 = 16 << 30

        @Option(
            name: .long,
            help: """
                The address of a TLS proxy in front of the coordinator: incidents it forwards are counted by the client address it \
                appends to X-Forwarded-For, not as one peer for the whole fleet.
                """)
        var trustedProxy: String?

        func validate() throws {
            guard ((1 << 20)...(64 << 30)).contains(maxSnapshotBytes) else {
                throw ValidationError("--max-snapshot-bytes \(maxSnapshotBytes) is not in 1 MiB…64 GiB (1048576…68719476736)")
            }
            guard (1...1_000_000).contains(keepSnapshots) else { throw ValidationError("--keep-snapshots \(keepSnapshots) is not in 1…1000000") }
            guard keepBytes >= maxSnapshotBytes else {
                throw ValidationError(
                    "--keep-bytes \(keepBytes) is below --max-snapshot-bytes \(maxSnapshotBytes), so a node could not keep one snapshot: "
                        + "raise --keep-bytes to at least \(maxSnapshotBytes)")
            }
            if let trustedProxy {
                var bytes = [UInt8](repeating: 0, count: 16)
                guard inet_pton(AF_INET, trustedProxy, &bytes) == 1 || inet_pton(AF_INET6, trustedProxy, &bytes) == 1 else {
                    throw ValidationError("--trusted-proxy \(trustedProxy) is not an IP address")
                }
            }
            guard (0...65535).contains(port) else { throw ValidationError("--port \(port) is not a port number (0…65535)") }
            guard (1...65536).contains(maxConnections) else { throw ValidationError("--max-connections \(maxConnections) is not in 1…65536") }
            guard (1...3600).contains(idleTimeoutS) else { throw ValidationError("--idle-timeout-s \(idleTimeoutS) is not in 1…3600") }
            guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level \(logLevel) is not a log level") }
        }

        func run() async throws {
            let level = Logger.Level(rawValue: logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            do {
                try await Coordinator(
                    settings: .init(
                        directory: directory.dir, host: host, port: port, maxSnapshotBytes: maxSnapshotBytes, maxConnections: maxConnections,
                        idleTimeoutS: idleTimeoutS, keepSnapshots: keepSnapshots, keepBytes: keepBytes, trustedProxy: trustedProxy),
                    logger: Logger(label: "pimesh-coordinator")
                ).run()
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Enroll: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "enroll", abstract: "Accept snapshots from the node with this public key.")

        @OptionGroup var directory: Directory

        @Argument(help: "The node's Ed25519 public key, 64 hex digits.")
        var publicKey: String

        func validate() throws {
            guard let bytes = Hex.decode(publicKey), bytes.count == 32 else { throw ValidationError("the public key must be 64 hex digits") }
            if let weakness = Ed25519Encoding.weakness(of: bytes) { throw ValidationError("the public key cannot be trusted: \(weakness)") }
        }

        func run() async throws {
            do {
                // The index names every node and holds their incidents: the coordinator's alone.
                umask(0o077)
                try FileIO.makeDirectories(directory.dir, mode: 0o700)
                let store = try CoordinatorStore(path: directory.dir + "/coordinator.db")
                let nodeID = try store.enroll(publicKey: publicKey.lowercased(), atMs: Clock.wallMilliseconds())
                print("enrolled \(nodeID)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Nodes: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "nodes", abstract: "The fleet: each node's last snapshot, its age and size, the node's score.")

        @OptionGroup var directory: Directory

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func run() async throws {
            do {
                let client = try directory.client()
                let raw = try client.get("/v1/nodes")
                if json { return print(String(decoding: raw, as: UTF8.self)) }
                let fleet = try APICoding.decode(FleetList.self, from: raw)
                var table = TextTable(["NODE", "LAST", "AGE", "LZ4", "RAW", "SCORE", "SNAPSHOTS"], rightAligned: [1, 2, 3, 4, 5, 6])
                for node in fleet.nodes {
                    table.add([
                        node.nodeID, node.lastSequence.map(String.init) ?? "–", node.ageS.map { DecimalText.format($0) + " s" } ?? "never",
                        node.compressedBytes.map(Format.megabytes) ?? "–", node.rawBytes.map(Format.megabytes) ?? "–",
                        node.nodeScore.map(String.init) ?? "–", String(node.snapshots),
                    ])
                }
                print(table.render() + "\n\(fleet.nodes.count) nodes")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Incidents: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "incidents", abstract: "Incidents across the fleet, newest first; those that started within 60 s of each other on different nodes are grouped.",
            discussion: "Nodes whose upload target is this coordinator send each incident when it opens and whenever it changes, signed with their node key.")

        @OptionGroup var directory: Directory

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func run() async throws {
            do {
                let client = try directory.client()
                let raw = try client.get("/v1/incidents")
                if json { return print(String(decoding: raw, as: UTF8.self)) }
                let list = try APICoding.decode(FleetIncidentList.self, from: raw)
                var table = TextTable(["GROUP", "NODE", "INCIDENT", "SEV", "STATE", "OPENED (UTC)", "TITLE"])
                for (index, group) in list.groups.enumerated() {
                    let label = group.count > 1 ? "\(index + 1) (\(Set(group.map(\.nodeID)).count) nodes)" : "\(index + 1)"
                    for incident in group {
                        table.add([label, incident.nodeID, incident.name, incident.severity, incident.state, UTCTime.iso8601(epochMs: incident.openedMs), PrintableText.clipped(incident.title, limit: 120)])
                    }
                }
                print(table.render() + "\n\(list.groups.count) group(s), \(list.groups.filter { $0.count > 1 }.count) across nodes")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
