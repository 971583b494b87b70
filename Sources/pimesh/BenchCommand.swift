import ArgumentParser
import PimeshAgent
import PimeshRuntime

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure this device: on-device micro-benchmarks of the lead's hot paths.",
        subcommands: [Ingest.self]
    )

    struct Ingest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ingest",
            abstract: "Heartbeat ingestion (decode, HMAC check, admission) without sockets.",
            discussion: """
                Feeds --count prepared datagrams of one --kind to a registry of --agents agents and \
                reports the time per datagram. --setup-only prepares without feeding, so that \
                benchmarks/ingest-allocations.sh can subtract setup from a valgrind count.
                """
        )

        @Option(help: "accepted, short, long, unknown_version, malformed, unknown_agent, bad_tag, replayed or stale.")
        var kind: String = "accepted"

        @Option(help: "How many datagrams to feed.")
        var count: Int = 200_000

        @Option(help: "How many registered agents.")
        var agents: Int = 100

        @Flag(help: "Prepare the registry and datagrams, feed none.")
        var setupOnly = false

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            guard IngestBenchmark.Kind(rawValue: kind) != nil else {
                throw ValidationError("--kind \(kind) is not one of \(IngestBenchmark.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard (1...10_000_000).contains(count) else { throw ValidationError("--count must be 1…10000000") }
            guard (1...10_000).contains(agents) else { throw ValidationError("--agents must be 1…10000") }
        }

        func run() async throws {
            do {
                let benchmark = try IngestBenchmark(kind: IngestBenchmark.Kind(rawValue: kind)!, count: count, agents: agents)
                let result = benchmark.run(count: setupOnly ? 0 : count)
                if json {
                    print(String(decoding: try APICoding.encode(result), as: UTF8.self))
                } else {
                    print(
                        "ingest \(result.kind): \(result.count) datagrams, \(result.agents) agents: "
                            + "\(Format.decimal(result.nanosecondsPerDatagram, places: 0)) ns each, "
                            + "\(Format.decimal(result.datagramsPerSecond / 1000, places: 0))k/s "
                            + "(accepted \(result.accepted), dropped \(result.dropped))")
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
