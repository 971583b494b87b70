import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "List, show, submit and cancel tasks.",
        discussion: """
            A task goes to the agent with the capability and the lowest predicted arrival \
            (latency + estimate_processing); PRED is that prediction, ACTUAL what it took from \
            hand-over to result. `pimesh delegate` submits one and waits for its result.
            """,
        subcommands: [List.self, Show.self, Submit.self, Cancel.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The newest tasks, with counts by state.")

        @OptionGroup var options: ClientOptions

        @Option(name: .long, help: "Only tasks in this state (queued, assigned, running, succeeded, failed, conflict, cancelled, skipped).")
        var state: String?

        @Option(name: .long, help: "How many tasks to show (1…10000).")
        var limit: Int = 20

        func validate() throws {
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be 1…10000, not \(limit)") }
        }

        func run() async throws {
            do {
                let list = try options.client().tasks(limit: limit, state: state, payloads: true)
                if options.json { return print(String(decoding: try APICoding.encode(list), as: UTF8.self)) }
                print(TasksCommand.render(list.tasks))
                let counts = ["queued", "assigned", "running", "succeeded", "failed", "conflict", "cancelled", "skipped"]
                    .map { "\($0) \(list.counts[$0] ?? 0)" }.joined(separator: "   ")
                print(counts)
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "One task in full.")

        @OptionGroup var options: ClientOptions

        @Argument(help: "The task id.")
        var id: String

        func run() async throws {
            do {
                let raw = try options.client().get("/v1/tasks/\(id)")
                if options.json { return print(String(decoding: raw, as: UTF8.self)) }
                print(TasksCommand.describe(try APICoding.decode(TaskView.self, from: raw)))
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "submit", abstract: "Submit a task and print the routing decision without waiting.")

        @OptionGroup var options: ClientOptions
        @OptionGroup var task: TaskOptions

        func run() async throws {
            do {
                let view = try options.client().submit(task.request)
                if options.json { return print(String(decoding: try APICoding.encode(view), as: UTF8.self)) }
                print(TasksCommand.describe(view))
                if view.decision == "SKIP" { throw CLIFailure("skipped: \(view.skipReason ?? "")", exitCode: 2) }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a task that has not finished.")

        @OptionGroup var options: ClientOptions

        @Argument(help: "The task id.")
        var id: String

        func run() async throws {
            do {
                try options.act("/v1/tasks/\(id)/cancel", done: "cancelled \(id)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    static func render(_ tasks: [TaskView]) -> String {
        var table = TextTable(
            ["ID", "AGE", "CAPABILITY", "STATE", "AGENT", "TRIES", "PRED", "ACTUAL", "RESULT"], rightAligned: [1, 5, 6, 7])
        let now = Clock.wallMilliseconds()
        for task in tasks {
            table.add([
                String(task.id.prefix(8)), UTCTime.age(now - task.submittedAtMs), task.capability, task.state, task.agentName ?? "–", String(task.attempts),
                task.predictedArrivalMs.map { DecimalText.format($0) + " ms" } ?? "–",
                task.actualMs.map { DecimalText.format($0) + " ms" } ?? "–",
                String((task.skipReason ?? task.error ?? task.result ?? "").prefix(48)),
            ])
        }
        return table.render()
    }

    static func describe(_ task: TaskView) -> String {
        var lines = ["task        \(task.id)", "capability  \(task.capability)   weight \(DecimalText.format(task.weight, places: 2))"]
        if task.decision == "SKIP" {
            lines.append("decision    SKIP: \(task.skipReason ?? "")")
        } else {
            let predicted = task.predictedArrivalMs.map { " predicted arrival \(DecimalText.format($0)) ms" } ?? ""
            lines.append("decision    SEND_NOW → \(task.agentName ?? task.agentID ?? "an agent when one is READY")\(predicted)")
            if let cost = task.costMs { lines.append("cost        \(DecimalText.format(cost)) ms expected to a successful answer") }
            if let routing = task.routing { lines.append("why         \(routing)") }
            if let runnerUp = task.runnerUp {
                let cost = runnerUp.costMs.map { ", cost \(DecimalText.format($0)) ms" } ?? ""
                lines.append(
                    "runner-up   \(runnerUp.agentName) at \(DecimalText.format(runnerUp.predictedArrivalMs)) ms\(cost) of \(task.candidates ?? 0) candidates")
            }
        }
        lines.append("state       \(task.state)   attempts \(task.attempts)")
        lines.append("submitted   \(UTCTime.iso8601(epochMs: task.submittedAtMs))" + (task.finishedAtMs.map { "   finished \(UTCTime.iso8601(epochMs: $0))" } ?? ""))
        if let actual = task.actualMs { lines.append("took        \(DecimalText.format(actual)) ms from hand-over to result") }
        if let result = task.result { lines.append("result      \(PrintableText.of(result, limit: .max))") }
        if let error = task.error { lines.append("error       \(PrintableText.of(error, limit: .max))") }
        return lines.joined(separator: "\n")
    }
}

/// What `tasks submit` and `delegate` send.
struct TaskOptions: ParsableArguments {
    @Argument(help: "The capability an agent must have (a–z, 0–9, '.', '_', '-').")
    var capability: String

    @Option(name: .long, help: "Opaque payload text handed to the agent (often JSON).")
    var payload: String = ""

    @Option(name: .long, help: "Payload weight: 0 is one unit of the class's base work, each 1 adds half of it.")
    var weight: Double?

    @Option(name: .long, help: "Refuse (SKIP) when no agent can finish within this many ms.")
    var deadlineMs: Int?

    @Option(name: .long, help: "Resubmitting with the same key returns the same task instead of a new one.")
    var idempotencyKey: String?

    @Option(name: .long, help: "0 background, 1 low, 2 normal, 3 critical (seed 001; default 2): a degraded node sheds the lower ones first.")
    var priority: Int = 2

    func validate() throws {
        guard (0...3).contains(priority) else { throw ValidationError("--priority must be 0, 1, 2 or 3, not \(priority)") }
        if let weight, !(0...100).contains(weight) { throw ValidationError("--weight must be 0…100, not \(weight)") }
        if let deadlineMs, deadlineMs < 1 { throw ValidationError("--deadline-ms must be at least 1") }
    }

    var request: LeadClient.TaskRequest {
        LeadClient.TaskRequest(
            capability: capability, payload: payload, weight: weight, deadlineMs: deadlineMs, idempotencyKey: idempotencyKey,
            priority: priority)
    }
}
