import Glibc
import ArgumentParser
import Logging
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshLED
import PimeshRuntime
import PimeshSystem
import ServiceLifecycle

struct LedsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leds",
        abstract: "What the LEDs show: the running lead's patterns, a live view, a test of every pattern.",
        discussion: """
            The lead drives its LEDs from its state (docs/leds.md): a liveness pulse while it \
            runs, the degradation level by blink speed, and a blink code for the most severe \
            open condition. Backends: sysfs (onboard ACT/PWR), gpiod (header pins), sim.
            """,
        subcommands: [Show.self, Watch.self, Test.self, SVG.self],
        defaultSubcommand: Show.self
    )

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "The running lead's LED backend, state and current patterns.")

        @OptionGroup var options: ClientOptions

        func run() async throws {
            do {
                let raw = try options.client().get("/v1/leds")
                if options.json { return print(String(decoding: raw, as: UTF8.self)) }
                let report = try APICoding.decode(LEDReport.self, from: raw)
                print("backend     \(report.backend)   (\(report.note))")
                let alert = report.alert.map { "\($0) (\(report.alertBlinks ?? 0) blinks)" } ?? "none"
                print("state       \(report.alive ? "alive" : "stopped")   level \(report.level)   alert \(alert)")
                var table = TextTable(["LED", "ROLE", "NOW", "PATTERN"])
                for led in report.leds {
                    table.add([led.name, led.role, led.on ? "on" : "off", led.pattern])
                }
                if !report.leds.isEmpty { print(table.render()) }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "watch", abstract: "Draw the running lead's LEDs live in the terminal (the sim backend's view in the demo).")

        @OptionGroup var options: ClientOptions

        @Option(name: .long, help: "Stop after this many seconds (default: until interrupted).")
        var duration: Double?

        func validate() throws {
            if let duration, duration <= 0 { throw ValidationError("--duration must be above 0 seconds") }
        }

        func run() async throws {
            do {
                let client = try options.client()
                let start = Clock.monotonicNow()
                var last = ""
                while duration.map({ (Clock.monotonicNow() - start).milliseconds / 1000 < $0 }) ?? true {
                    let report = try APICoding.decode(LEDReport.self, from: client.get("/v1/leds"))
                    let line = Self.draw(report, color: Terminal.isInteractive)
                    if Terminal.isInteractive {
                        print("\r\u{1B}[2K" + line, terminator: "")
                        fflushStdout()
                    } else if line != last {
                        print(line)
                    }
                    last = line
                    try await Task.sleep(for: .milliseconds(40))
                }
                if Terminal.isInteractive { print("") }
            } catch {
                throw CLIFailure.report(error)
            }
        }

        static func draw(_ report: LEDReport, color: Bool) -> String {
            let colors = ["liveness": "32", "level": "33", "alert": "31"]
            let lamps = report.leds.map { led -> String in
                let lamp = led.on ? "●" : "○"
                let painted = color && led.on ? "\u{1B}[\(colors[led.role] ?? "37")m\(lamp)\u{1B}[0m" : lamp
                return "\(painted) \(led.name)"
            }
            let alert = report.alert.map { " alert \($0)" } ?? ""
            return lamps.joined(separator: "   ") + "   [\(report.backend), \(report.level)\(alert)]"
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test", abstract: "Run every pattern once on the configured LEDs, then put them back.",
            discussion: """
                Drives the LEDs directly (stop the lead first, or it will fight for them): the \
                liveness pulse, each degradation level, each blink code, about 40 s in all. \
                Ctrl-C stops early and still restores the LEDs.
                """
        )

        @OptionGroup var local: LocalConfigOptions

        @Option(name: .long, help: "Use this backend instead of the config's: auto, sysfs, gpiod or sim.")
        var backend: String?

        @Flag(name: .long, help: "Print JSON lines (one per step) for scripts.")
        var json = false

        func validate() throws {
            if let backend, !["auto", "sysfs", "gpiod", "sim"].contains(backend) {
                throw ValidationError("--backend \(backend) is not one of auto, sysfs, gpiod, sim")
            }
        }

        func run() async throws {
            do {
                let config = try local.load()
                guard let built = try LEDConfiguration.build(config, backendOverride: backend, now: { Clock.monotonicNow() }) else {
                    throw CLIFailure("leds.backend is off: nothing to test (use --backend)")
                }
                if !json {
                    print("backend \(built.backend.name) (\(built.note)); LEDs: \(built.assignments.map(\.name).joined(separator: ", "))")
                }
                let group = ServiceGroup(
                    configuration: .init(
                        services: [
                            .init(
                                service: LEDTestService(built: built, json: json),
                                successTerminationBehavior: .gracefullyShutdownGroup)
                        ],
                        gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "pimesh-leds")))
                try await group.run()
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct SVG: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "svg", abstract: "Draw the pattern pictures that docs/leds.md shows, from the patterns themselves.",
            discussion: """
                With a picture's name, prints it to stdout (or writes it to --out FILE). With --all, \
                writes every picture into the directory --out names; the repository's pictures are \
                refreshed with `pimesh leds svg --all --out docs/leds`.
                """)

        @Argument(help: "The picture: \(LEDPictures.all.map { String($0.file.dropLast(4)) }.joined(separator: ", ")).")
        var picture: String?

        @Flag(name: .long, help: "Every picture, into the directory --out names.")
        var all = false

        @Option(name: .long, help: "A file for one picture, a directory with --all (default for one picture: stdout).")
        var out: String?

        func validate() throws {
            let names = LEDPictures.all.map { String($0.file.dropLast(4)) }
            if all {
                guard picture == nil else { throw ValidationError("give a picture's name or --all, not both") }
                guard out != nil else { throw ValidationError("--all writes several files: name their directory with --out") }
            } else {
                guard let picture else { throw ValidationError("name a picture (\(names.joined(separator: ", "))) or give --all --out DIR") }
                guard names.contains(picture) else { throw ValidationError("no picture \"\(picture)\"; there are \(names.joined(separator: ", "))") }
            }
        }

        func run() async throws {
            do {
                if all, let out {
                    try FileIO.makeDirectories(out)
                    for (file, svg) in LEDPictures.all {
                        try FileIO.writeAtomically(path: out + "/" + file, bytes: Array(svg.utf8), mode: 0o644)
                        print(out + "/" + file)
                    }
                    return
                }
                let svg = LEDPictures.all.first { $0.file == (picture ?? "") + ".svg" }!.svg
                if let out {
                    try FileIO.writeAtomically(path: out, bytes: Array(svg.utf8), mode: 0o644)
                } else {
                    print(svg, terminator: svg.hasSuffix("\n") ? "" : "\n")
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}

/// Runs the LED test as a service so that SIGINT still restores the LEDs.
struct LEDTestService: Service {
    let built: LEDConfiguration.Built
    let json: Bool

    func run() async throws {
        defer { try? built.backend.restore() }
        let test = LEDTestRun(backend: built.backend, leds: built.assignments.count, now: { Clock.monotonicNow() })
        try? await cancelWhenGracefulShutdown {
            try await test.run { step in
                if json {
                    print(#"{"step": "\#(step.label)", "pattern": "\#(step.pattern)", "ms": \#(Int(step.duration.milliseconds))}"#)
                } else {
                    print("\(step.label.padding(30))\(step.pattern)")
                }
                fflushStdout()
            }
        }
    }
}

func fflushStdout() {
    // stdout is a C global; flushing it from one task at a time is safe.
    fflush(nil)
}
