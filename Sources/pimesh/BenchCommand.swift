import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSim
import PimeshRuntime
import PimeshSystem

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure this device: the load benchmark (run) and micro-benchmarks of the lead's hot paths.",
        subcommands: [Run.self, Ingest.self, Tasks.self, Compress.self]
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
                            + "\(DecimalText.format(result.nanosecondsPerDatagram, places: 0)) ns each, "
                            + "\(DecimalText.format(result.datagramsPerSecond / 1000, places: 0))k/s "
                            + "(accepted \(result.accepted), dropped \(result.dropped))")
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Tasks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tasks",
            abstract: "Load a running lead with tasks: throughput, accept latency, submit-to-result.",
            discussion: """
                Needs a lead and READY agents with capabilities (pimesh swarm --agents 100). \
                Submits --tasks tasks from --concurrency clients across the agents' capabilities \
                and waits for every result. Accept latency is the submit round trip, which includes \
                the durable commit; submit-to-result is the lead's finished_at − submitted_at. \
                benchmarks/tasks.sh starts a lead and a swarm and runs this.
                """
        )

        @OptionGroup var options: ClientOptions

        @Option(help: "How many tasks.")
        var tasks: Int = 1000

        @Option(help: "How many clients submit at once.")
        var concurrency: Int = 16

        @Option(help: "Payload weight of every task.")
        var weight: Double = 1

        func validate() throws {
            guard (1...1_000_000).contains(tasks) else { throw ValidationError("--tasks must be 1…1000000") }
            guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be 1…256") }
            guard (0...100).contains(weight) else { throw ValidationError("--weight must be 0…100") }
        }

        func run() async throws {
            do {
                let result = try await TaskBenchmark(
                    dataDir: try options.locatedDataDir(), tasks: tasks, concurrency: concurrency, weight: weight
                ).run()
                if options.json {
                    print(String(decoding: try APICoding.encode(result), as: UTF8.self))
                } else {
                    print(
                        """
                        tasks \(result.tasks) on \(result.agents) READY agents, \(result.concurrency) clients: \
                        \(DecimalText.format(result.tasksPerSecond)) tasks/s over \(DecimalText.format(result.seconds, places: 2)) s
                        accept (durable)   p50 \(DecimalText.format(result.acceptP50Ms, places: 2)) ms   p99 \(DecimalText.format(result.acceptP99Ms, places: 2)) ms
                        submit → result    p50 \(DecimalText.format(result.submitToResultP50Ms)) ms   p99 \(DecimalText.format(result.submitToResultP99Ms)) ms
                        succeeded \(result.succeeded), other outcomes \(result.otherOutcomes), \
                        prediction within 50 ms \(DecimalText.format(result.predictionWithin50Ms * 100)) %
                        """)
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
