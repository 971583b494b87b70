import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

struct ConflictsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts",
        abstract: "The conflict log, quarantined agents, and releasing them.",
        discussion: """
            A CONFLICT (−1) answer is information, not failure (seed 001 §5.1): it is appended to \
            an append-only log with the seed's priority (TEMPORAL_PARADOX and HASH_MISMATCH 4 … \
            CAPABILITY_MISMATCH 1). Priority-4 conflicts quarantine their agent: it gets no new \
            work until released here. Each priority has the seed's resolution time (1 h, 10 min, \
            1 min, at once for 1–4): an unresolved conflict past it opens an incident, and \
            priority 3 and 4 are escalated at once (SEV2 for the node's sector coordinator, SEV1 \
            for the orchestrator upstream). `resolve SEQ` records that it was dealt with; \
            releasing a quarantine resolves the conflict that caused it.
            """,
        subcommands: [List.self, Resolve.self, Release.self, Quarantine.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The newest conflicts and the quarantined agents.")

        @OptionGroup var options: ClientOptions

        @Option(name: .long, help: "How many log entries to show.")
        var limit: Int = 20

        func validate() throws {
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be 1…10000, not \(limit)") }
        }

        func run() async throws {
            do {
                let list = try options.client().conflicts(limit: limit)
                if options.json { return print(String(decoding: try APICoding.encode(list), as: UTF8.self)) }
                var table = TextTable(
                    ["SEQ", "AGENT", "TYPE", "PRIO", "STRATEGY", "SOURCE", "QUARANTINED", "RESOLVE BY", "STATUS"], rightAligned: [0, 3])
                for entry in list.conflicts {
                    let status =
                        entry.resolvedAtMs != nil ? "resolved" : entry.overdue == true ? "OVERDUE" : entry.resolveByMs == nil ? "" : "open"
                    table.add([
                        String(entry.seq), entry.agentName ?? String(entry.agentID.prefix(8)), entry.type, String(entry.priority),
                        entry.strategy, String(entry.source.prefix(44)), entry.quarantined ? "yes" : "",
                        entry.resolveByMs.map { UTCTime.iso8601(epochMs: $0) } ?? "when convenient", status,
                    ])
                }
                print(table.render())
                print("\(list.total) conflicts logged")
                if list.quarantined.isEmpty {
                    print("no agent is quarantined")
                }
                for agent in list.quarantined {
                    print("quarantined \(agent.agentName ?? agent.agentID): \(PrintableText.of(agent.reason, limit: .max))")
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Resolve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "resolve", abstract: "Record that a logged conflict was dealt with (stops its deadline and escalation).")

        @OptionGroup var options: ClientOptions

        @Argument(help: "The conflict's SEQ, as `pimesh conflicts` lists it.")
        var seq: Int64

        @Option(name: .long, help: "What was done, for the log (at most 1,024 bytes).")
        var note: String = ""

        func run() async throws {
            do {
                struct Body: Encodable { var note: String }
                try options.act(
                    "/v1/conflicts/\(seq)/resolve", body: try APICoding.encode(Body(note: note)), done: "conflict #\(seq) resolved")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "release", abstract: "Let a quarantined agent take work again.")

        @OptionGroup var options: ClientOptions

        @Argument(help: "The agent's name or id.")
        var agent: String

        func run() async throws {
            do {
                try options.act("/v1/agents/\(agent)/release", done: "released \(agent)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Quarantine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "quarantine", abstract: "Hold an agent out of routing until it is released.")

        @OptionGroup var options: ClientOptions

        @Argument(help: "The agent's name or id.")
        var agent: String

        @Option(name: .long, help: "Why, for the log and for whoever releases it.")
        var reason: String = "quarantined by an operator"

        func run() async throws {
            do {
                struct Body: Encodable { var reason: String }
                try options.act(
                    "/v1/agents/\(agent)/quarantine", body: try APICoding.encode(Body(reason: reason)), done: "quarantined \(agent)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
