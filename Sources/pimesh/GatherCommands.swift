import ArgumentParser
import PimeshAgent

/// What `ask` and `broadcast` take.
struct GatherOptions: ParsableArguments {
    @Option(name: .long, help: "Only agents with this capability (default: all agents).")
    var capability: String?

    @Option(name: .long, help: "Opaque payload text handed to each agent.")
    var payload: String = ""

    @Option(name: .long, help: "Payload weight, as for tasks.")
    var weight: Double?

    @Option(name: .long, help: "Arrival window in ms (default: the lead's, 500).")
    var windowMs: Int?

    @Option(name: .long, help: "Give up gathering after this many ms (default: the lead's, 5000).")
    var timeoutMs: Int?

    struct Body: Encodable {
        var capability: String?
        var payload: String
        var weight: Double?
        var windowMs: Int?
        var timeoutMs: Int?
    }

    func send(_ path: String, options: ClientOptions) throws {
        let body = Body(capability: capability, payload: payload, weight: weight, windowMs: windowMs, timeoutMs: timeoutMs)
        let wait = (timeoutMs ?? 5000) + 10_000
        let raw = try options.client().withTimeout(milliseconds: wait).post(path, json: try APICoding.encode(body))
        let report = try APICoding.decode(GatherReport.self, from: raw)
        if options.json {
            print(String(decoding: raw, as: UTF8.self))
        } else {
            print(Self.render(report))
        }
        if report.decision != "PROCEED" {
            throw CLIFailure("\(report.decision): \(report.reason); \(report.recommendation)", exitCode: 3)
        }
    }

    static func render(_ report: GatherReport) -> String {
        var lines = [
            "\(report.kind) \(report.id)   \(report.capability.map { "capability \($0)" } ?? "all agents")",
            "decision    \(report.decision) (confidence \(Format.decimal(report.confidence, places: 3)))   \(report.reason)",
            "gather      \(report.gather): \(Format.decimal(report.responseRatio * 100)) % READY in the window   "
                + "\(report.targets) targets, \(report.sent) sent, \(report.skipped) skipped",
            "answers     \(report.ready) READY   \(report.conflict) CONFLICT   \(report.transit) TRANSIT   "
                + "\(report.silent) silent   \(report.late) late",
            "took        \(Format.decimal(report.durationMs)) ms (window \(report.windowMs) ms)",
        ]
        if !report.answers.isEmpty {
            var table = TextTable(["AGENT", "STATE", "ARRIVAL", "PREDICTED", "ANSWER"], rightAligned: [2, 3])
            for answer in report.answers {
                table.add([
                    answer.agentName, answer.state, Format.decimal(answer.arrivalMs) + " ms",
                    Format.decimal(answer.predictedArrivalMs) + " ms", String((answer.answer ?? "").prefix(48)),
                ])
            }
            lines.append(table.render())
        }
        for skipped in report.skippedAgents.prefix(10) {
            lines.append("skipped     \(skipped.agentName): \(skipped.reason)")
        }
        return lines.joined(separator: "\n")
    }
}

struct AskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ask",
        abstract: "Scatter a question to agents and gather their answers with a trinary quorum.",
        discussion: """
            Each agent is sent the question at target − its lead time, so that answers arrive \
            together (seed 001 §3.2). Answers within the window count; the quorum decides \
            PROCEED (≥ 95 % READY, ≤ 5 % CONFLICT), WAIT, RESOLVE_CONFLICTS or RETRY. \
            Exit status 0 on PROCEED, 3 otherwise.
            """
    )

    @OptionGroup var options: ClientOptions
    @OptionGroup var gather: GatherOptions

    func run() async throws {
        do { try gather.send("/v1/ask", options: options) } catch { throw CLIFailure.report(error) }
    }
}

struct BroadcastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "Send a notice to agents and check that enough of them acknowledged it READY.",
        discussion: "As `ask`, without collecting the answers' text. Exit status 0 on PROCEED, 3 otherwise."
    )

    @OptionGroup var options: ClientOptions
    @OptionGroup var gather: GatherOptions

    func run() async throws {
        do { try gather.send("/v1/broadcast", options: options) } catch { throw CLIFailure.report(error) }
    }
}
