import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

struct DelegateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delegate",
        abstract: "Submit a task and wait for its result.",
        discussion: """
            Prints the routing decision (which agent, with what predicted arrival) and the result. \
            Exit status: 0 succeeded, 1 failed, conflict, cancelled or timed out, 2 skipped \
            (no agent could take it; the reason is printed).
            """
    )

    @OptionGroup var options: ClientOptions
    @OptionGroup var task: TaskOptions

    @Option(name: .long, help: "Give up waiting after this many seconds (the task itself goes on); seed 001's timeout.")
    var timeout: Double = 300

    func validate() throws {
        if timeout <= 0 { throw ValidationError("--timeout must be above 0 seconds") }
    }

    func run() async throws {
        do {
            let client = try options.client()
            var view = try client.submit(task.request)
            let start = Clock.monotonicNow()
            while !view.isFinished {
                if (Clock.monotonicNow() - start).milliseconds / 1000 > timeout {
                    throw CLIFailure("task \(view.id) still \(view.state) after \(DecimalText.format(timeout)) s")
                }
                try await Task.sleep(for: .milliseconds(20))
                view = try client.task(id: view.id)
            }
            if options.json {
                print(String(decoding: try APICoding.encode(view), as: UTF8.self))
            } else {
                print(TasksCommand.describe(view))
            }
            switch view.state {
            case "succeeded": return
            case "skipped": throw CLIFailure("skipped: \(view.skipReason ?? "")", exitCode: 2)
            default: throw CLIFailure("task \(view.id) \(view.state)\(view.error.map { ": \($0)" } ?? "")")
            }
        } catch {
            throw CLIFailure.report(error)
        }
    }
}
