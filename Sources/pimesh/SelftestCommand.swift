import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshRuntime
import PimeshSystem

struct SelftestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check this device: LEDs, GPIO, heartbeat socket, SD-card fsync, free space, cgroups, thermal, power, clock.",
        discussion: """
            Each check prints PASS, FAIL or SKIP with its reason; SKIP means the part is absent \
            and pimesh works without it (no onboard LEDs on a PC, no cgroup delegation). The \
            exit status is 1 when any check FAILs. Run it on a Pi after flashing, as the user \
            the lead runs as.
            """
    )

    @OptionGroup var local: LocalConfigOptions

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    func run() async throws {
        do {
            let report = Selftest(config: try local.load()).run()
            if json {
                print(String(decoding: try APICoding.encode(report), as: UTF8.self))
            } else {
                for result in report.results {
                    print("\(result.result.rawValue)  \(result.check.padding(18))\(result.detail)")
                }
                print("\(report.passed) passed, \(report.failed) failed, \(report.skipped) skipped")
            }
            if report.failed > 0 { throw CLIFailure("\(report.failed) check(s) failed", exitCode: 1) }
        } catch {
            throw CLIFailure.report(error)
        }
    }
}
