import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

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

    @Option(name: .long, help: "0 background, 1 low, 2 normal, 3 critical: a degraded node refuses the lower ones first.")
    var priority: Int = 2

    @Flag(name: .long, help: "Approve it while the node is DEGRADED_SEVERE or EMERGENCY (seed 001: mesh-wide operations need a human's approval); recorded in the audit log as yours (docs/audit.md says how you are named).")
    var approve = false

    func validate() throws {
        guard (0...3).contains(priority) else { throw ValidationError("--priority must be 0, 1, 2 or 3, not \(priority)") }
    }

    struct Body: Encodable {
        var capability: String?
        var payload: String
        var weight: Double?
        var windowMs: Int?
        var timeoutMs: Int?
        var priority: Int
        var sampleSize: Int?
        var approved: Bool?
    }

    func send(_ path: String, options: ClientOptions, sampleSize: Int? = nil, requireAck: Bool = false) throws {
        let body = Body(
            capability: capability, payload: payload, weight: weight, windowMs: windowMs, timeoutMs: timeoutMs, priority: priority,
            sampleSize: sampleSize, approved: approve ? true : nil)
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
        let acknowledged = report.sent - report.silent - report.late
        if requireAck, acknowledged < report.targets {
            throw CLIFailure(
                "\(acknowledged) of \(report.targets) agents acknowledged in the window; --require-ack wants every one", exitCode: 3)
        }
    }

    static func render(_ report: GatherReport) -> String {
        var lines = [
            "\(report.kind) \(report.id)   \(report.capability.map { "capability \($0)" } ?? "all agents")",
            "decision    \(report.decision) (confidence \(DecimalText.format(report.confidence, places: 3)))   \(report.reason)",
            "gather      \(report.gather): \(DecimalText.format(report.responseRatio * 100)) % READY in the window   "
                + "\(report.targets) targets, \(report.sent) sent, \(report.skipped) skipped",
            "answers     \(report.ready) READY   \(report.conflict) CONFLICT   \(report.transit) TRANSIT   "
                + "\(report.silent) silent   \(report.late) late",
            "took        \(DecimalText.format(report.durationMs)) ms (window \(report.windowMs) ms)",
        ]
        if !report.answers.isEmpty {
            var table = TextTable(["AGENT", "STATE", "ARRIVAL", "PREDICTED", "ANSWER"], rightAligned: [2, 3])
            for answer in report.answers {
                table.add([
                    answer.agentName, answer.state, DecimalText.format(answer.arrivalMs) + " ms",
                    DecimalText.format(answer.predictedArrivalMs) + " ms", String((answer.answer ?? "").prefix(48)),
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

    @Option(name: .long, help: "Ask at most this many agents, those that would answer soonest (seed 001's default, 100).")
    var sampleSize: Int = 100

    func validate() throws {
        guard (1...100_000).contains(sampleSize) else { throw ValidationError("--sample-size must be 1…100000") }
    }

    func run() async throws {
        do { try gather.send("/v1/ask", options: options, sampleSize: sampleSize) } catch { throw CLIFailure.report(error) }
    }
}

struct BroadcastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "Send a notice to agents and check that enough of them acknowledged it READY.",
        discussion: """
            As `ask`, to every agent (or every one with --capability), without collecting the \
            answers' text. Exit status 0 on PROCEED (and, with --require-ack, when every targeted \
            agent acknowledged within the window), 3 otherwise.
            """
    )

    @OptionGroup var options: ClientOptions
    @OptionGroup var gather: GatherOptions

    @Flag(name: .long, help: "Fail (exit 3) unless every targeted agent acknowledges within the window (seed 001's default: off).")
    var requireAck = false

    func run() async throws {
        do { try gather.send("/v1/broadcast", options: options, requireAck: requireAck) } catch { throw CLIFailure.report(error) }
    }
}
