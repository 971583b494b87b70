import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshRuntime
import PimeshStore
import PimeshSystem

struct IncidentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incidents",
        abstract: "The node's incidents: what is open, their timelines against the SLOs, post-mortems (docs/incidents.md).",
        discussion: """
            The lead opens an incident when a trigger fires (an agent down, tasks failing, a mass failure, \
            degradation, an integrity failure), one per cause, and times it against seed 004's targets. An \
            incident is mitigated when no cause fires, and resolved after incidents.observation_window_s \
            quiet (default 30 min) or by an operator. Acknowledging, notes, severity changes and resolving \
            are audited as yours (docs/audit.md says how you are named). Without a running lead, list, show, postmortem and log read the database.
            """,
        subcommands: [List.self, Show.self, Ack.self, Note.self, RootCause.self, Resolve.self, SetSeverity.self, Postmortem.self, Log.self],
        defaultSubcommand: List.self)

    /// The lead's API, or the database read-only when no lead runs.
    enum Source {
        case lead(LeadClient)
        case database(IncidentStore)

        init(_ options: ClientOptions) throws {
            let dataDir = try options.locatedDataDir()
            if let client = try? LeadClient(dataDir: dataDir) {
                self = .lead(client)
                return
            }
            let path = dataDir + "/pimesh.db"
            guard FileIO.exists(path) else { throw CLIFailure("no lead runs with data dir \(dataDir), and it holds no pimesh.db") }
            self = .database(IncidentStore(database: try Database(path: path, readOnly: true)))
        }

        func incident(_ id: Int64) throws -> (Incident, postmortem: String?) {
            switch self {
            case .lead(let client):
                let incident = try APICoding.decode(Incident.self, from: try client.get("/v1/incidents/\(id)"))
                return (incident, incident.state == .resolved ? String(decoding: try client.get("/v1/incidents/\(id)/postmortem"), as: UTF8.self) : nil)
            case .database(let store):
                guard let row = try store.row(id: id) else { throw CLIFailure("no incident \(id)") }
                return (try APICoding.decode(Incident.self, from: Array(row.body.utf8)), row.postmortem)
            }
        }
    }

    static func parseID(_ text: String) throws -> Int64 {
        let digits = text.uppercased().hasPrefix("INC-") ? String(text.dropFirst(4)) : text
        guard let id = Int64(digits), id > 0 else { throw ValidationError("\(text) is not an incident id (42 or INC-000042)") }
        return id
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The newest incidents, open ones marked; --open for only those.")

        @OptionGroup var options: ClientOptions

        @Option(name: .long, help: "How many (1…500).")
        var limit = 20

        @Flag(name: .long, help: "Only incidents that are not resolved.")
        var open = false

        func validate() throws {
            guard (1...500).contains(limit) else { throw ValidationError("--limit must be 1…500") }
        }

        func run() async throws {
            do {
                var incidents: [Incident]
                // --open looks further back: open ones may be older than the newest resolved.
                let fetch = open ? 500 : limit
                switch try Source(options) {
                case .lead(let client):
                    incidents = try APICoding.decode(IncidentList.self, from: try client.get("/v1/incidents?limit=\(fetch)")).incidents
                case .database(let store):
                    incidents = try store.recent(limit: fetch).compactMap { try? APICoding.decode(Incident.self, from: Array($0.body.utf8)) }
                }
                if open { incidents = Array(incidents.filter { $0.state != .resolved }.prefix(limit)) }
                if options.json { return print(String(decoding: try APICoding.encode(incidents), as: UTF8.self)) }
                guard !incidents.isEmpty else { return print(open ? "no open incidents" : "no incidents yet") }
                var table = TextTable(["ID", "SEV", "STATE", "OPENED (UTC)", "AGE", "ACK", "BREACHES", "TITLE"])
                let now = Clock.wallMilliseconds()
                for incident in incidents {
                    table.add([
                        incident.name, "\(incident.severity)", incident.state.rawValue, UTCTime.iso8601(epochMs: incident.openedMs),
                        UTCTime.age(now - incident.openedMs), incident.acknowledgedBy == nil ? "-" : "yes",
                        incident.breaches.isEmpty ? "-" : incident.breaches.joined(separator: ","), incident.title,
                    ])
                }
                print(table.render())
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One incident: its timeline and where it stands against each SLO.")

        @OptionGroup var options: ClientOptions

        @Argument(help: "The incident: 42 or INC-000042.")
        var id: String

        func run() async throws {
            do {
                let (incident, _) = try Source(options).incident(try IncidentsCommand.parseID(id))
                if options.json { return print(String(decoding: try APICoding.encode(incident, pretty: true), as: UTF8.self)) }
                print(
                    "\(incident.name) \(incident.severity) \(incident.state.rawValue): \(incident.title)\n"
                        + "kind \(incident.kind.rawValue), escalation E\(incident.escalation), causes: \(incident.causes.joined(separator: ", "))")
                if !incident.agents.isEmpty { print("agents: " + incident.agents.joined(separator: ", ")) }
                var targets = TextTable(["TARGET", "WITHIN", "REACHED AFTER", "MET"])
                for row in PostMortem.targets(incident) { targets.add([row.name, row.within, row.after, row.met]) }
                print("\n" + targets.render())
                var table = TextTable(["TIME (UTC)", "WHAT", "BY", "DETAIL"])
                for entry in PostMortem.ordered(incident.timeline) {
                    table.add([UTCTime.iso8601(epochMs: entry.atMs, milliseconds: true), entry.kind, entry.actor, PrintableText.clipped(entry.detail, limit: 1024)])
                }
                print("\n" + table.render())
                if incident.timelineDropped > 0 { print("(\(incident.timelineDropped) entries dropped from the middle)") }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Ack: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ack", abstract: "Acknowledge an incident (stops its acknowledge timer; counts as a status update).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The incident: 42 or INC-000042.") var id: String

        func run() async throws {
            do {
                let id = try IncidentsCommand.parseID(id)
                try options.act("/v1/incidents/\(id)/ack", done: "acknowledged \(Incident.name(id))")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Note: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "note", abstract: "Add a status update to an incident's timeline (seed 004's update cadence).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The incident: 42 or INC-000042.") var id: String
        @Argument(help: "What to record (at most 1,024 bytes).") var text: String

        func run() async throws {
            do {
                let id = try IncidentsCommand.parseID(id)
                let body = try APICoding.encode(["text": text])
                try options.act("/v1/incidents/\(id)/note", body: body, done: "noted on \(Incident.name(id))")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct RootCause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "root-cause", abstract: "Record an incident's root cause (stops its root-cause timer; goes into the post-mortem and the log).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The incident: 42 or INC-000042.") var id: String
        @Argument(help: "The cause (at most 1,024 bytes).") var text: String

        func run() async throws {
            do {
                let id = try IncidentsCommand.parseID(id)
                try options.act("/v1/incidents/\(id)/root-cause", body: try APICoding.encode(["text": text]), done: "root cause recorded on \(Incident.name(id))")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Resolve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "resolve", abstract: "Resolve an incident now, before its observation window ends; writes its post-mortem draft.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The incident: 42 or INC-000042.") var id: String
        @Option(name: .long, help: "Why (goes into the timeline and the incident log).") var reason: String?

        func run() async throws {
            do {
                let id = try IncidentsCommand.parseID(id)
                let body = try APICoding.encode(["reason": reason ?? ""])
                try options.act("/v1/incidents/\(id)/resolve", body: body, done: "resolved \(Incident.name(id)); pimesh incidents postmortem \(id)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct SetSeverity: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "severity", abstract: "Set an incident's severity (only an operator lowers one).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The incident: 42 or INC-000042.") var id: String
        @Argument(help: "SEV1, SEV2, SEV3 or SEV4.") var severity: String

        func validate() throws {
            guard Severity(name: severity) != nil else { throw ValidationError("\(severity) is not SEV1, SEV2, SEV3 or SEV4") }
        }

        func run() async throws {
            do {
                let id = try IncidentsCommand.parseID(id)
                let body = try APICoding.encode(["severity": severity.uppercased()])
                try options.act("/v1/incidents/\(id)/severity", body: body, done: "\(Incident.name(id)) is \(severity.uppercased())")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Postmortem: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "postmortem", abstract: "Print an incident's post-mortem (seed 004's template, filled from its timeline; a draft while it is open).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The incident: 42 or INC-000042.") var id: String

        func run() async throws {
            do {
                let source = try Source(options)
                let id = try IncidentsCommand.parseID(id)
                if case .lead(let client) = source {
                    return print(String(decoding: try client.get("/v1/incidents/\(id)/postmortem"), as: UTF8.self), terminator: "")
                }
                let (incident, stored) = try source.incident(id)
                print(stored ?? PostMortem.markdown(incident, nodeID: "(this node)"), terminator: "")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "log", abstract: "Seed 003's incident log (CSV) of every resolved incident the node keeps.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            do {
                switch try Source(options) {
                case .lead(let client): print(String(decoding: try client.get("/v1/incident-log"), as: UTF8.self), terminator: "")
                case .database(let store): print(([PostMortem.csvHeader] + (try store.csvRows())).joined(separator: "\n"))
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
