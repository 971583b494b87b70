import ArgumentParser
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSnapshot
import PimeshSystem

extension BenchCommand {
    struct Compress: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "compress",
            abstract: "Snapshot compression speed: FILE through the LZ4 frame writer with both SHA-256s.",
            discussion: """
                Compresses FILE the way a snapshot is compressed (liblz4 frame, level 1, content \
                checksum, SHA-256 of the raw and compressed bytes) into OUT, --runs times, and \
                reports the best run. benchmarks/snapshot.sh runs `lz4 -1` on the same file beside it.
                """
        )

        @Argument(help: "The file to compress (e.g. a VACUUM INTO copy of the database).")
        var file: String

        @Option(help: "Where to write the frame (default FILE.bench.lz4, removed afterwards).")
        var out: String?

        @Option(help: "How many runs; the best is reported.")
        var runs: Int = 3

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            guard (1...100).contains(runs) else { throw ValidationError("--runs must be 1…100") }
        }

        func run() async throws {
            do {
                let output = out ?? file + ".bench.lz4"
                var best = Double.infinity
                var digest = LZ4Frame.Digest()
                for _ in 0..<runs {
                    let input = open(file, O_RDONLY | O_CLOEXEC)
                    guard input >= 0 else { throw CLIFailure("cannot open \(file): \(String(cString: strerror(errno)))") }
                    let fd = open(output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                    guard fd >= 0 else {
                        close(input)
                        throw CLIFailure("cannot create \(output): \(String(cString: strerror(errno)))")
                    }
                    let started = Clock.monotonicNow()
                    digest = try LZ4Frame.compress(input: input, output: fd)
                    best = min(best, (Clock.monotonicNow() - started).milliseconds)
                    close(fd)
                    close(input)
                }
                if out == nil { unlink(output) }
                let mbPerSecond = Double(digest.rawBytes) / 1_048_576 / (best / 1000)
                if json {
                    return print(
                        #"{"raw_bytes": \#(digest.rawBytes), "compressed_bytes": \#(digest.compressedBytes), "best_ms": \#(DecimalText.format(best, places: 2)), "mib_per_s": \#(DecimalText.format(mbPerSecond))}"#
                    )
                }
                print(
                    "\(Format.megabytes(digest.rawBytes)) → \(Format.megabytes(digest.compressedBytes)) in \(DecimalText.format(best, places: 2)) ms "
                        + "(best of \(runs)): \(DecimalText.format(mbPerSecond)) MiB/s")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
