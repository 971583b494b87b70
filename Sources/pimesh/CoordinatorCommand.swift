import ArgumentParser
import Glibc
import Logging
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshRuntime
import PimeshSnapshot
import PimeshSystem

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "This node and the coordinator, the upstream receiver of the fleet's snapshots.",
        discussion: """
            The coordinator itself is another program, pimesh-coordinator, run on the machine that \
            collects the fleet's snapshots (docs/snapshots.md). On a node, join enrolls the node \
            with it.
            """,
        subcommands: [Join.self]
    )

    struct Join: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "join", abstract: "Enroll this node with a coordinator, using the coordinator's enroll token.",
            discussion: """
                Run on the node (the first boot of an injected image does it). The node's key \
                (<data-dir>/node-key) is made when missing; the coordinator checks that the node \
                holds it. The enroll token is the file enroll-token in the coordinator's dir: it \
                can enroll nodes and do nothing else. Enrolling twice is harmless.
                """)

        @Argument(help: "The coordinator's URL (http:// or https://).")
        var url: String

        @Option(name: .long, help: "A file holding the enroll token, or - to read it from stdin (never on the command line).")
        var tokenFile: String

        @Option(name: .long, help: "The lead's data dir (default: $PIMESH_DATA_DIR, else ./.pimesh).")
        var dataDir: String?

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func validate() throws {
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else { throw ValidationError("the URL must start with http:// or https://") }
        }

        static func readStandardInput() throws -> String {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1024)
            while bytes.count <= 4096 {
                let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw CLIFailure("cannot read the token from stdin: \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                bytes += chunk[0..<n]
            }
            guard bytes.count <= 4096 else { throw CLIFailure("stdin holds more than 4096 bytes: not a token") }
            return String(decoding: bytes, as: UTF8.self)
        }

        func run() async throws {
            do {
                let dataDir = dataDir ?? LeadDiscovery.defaultDataDir(environment: ProcessEnvironment.current)
                let token = try (tokenFile == "-" ? Self.readStandardInput() : FileIO.readText(path: tokenFile)).trimmingWhitespace()
                guard !token.isEmpty else { throw CLIFailure("\(tokenFile) holds no token") }
                let key = try NodeKey.loadOrCreate(dataDir: dataDir)
                let now = try NodeEnrollment(key: key).send(to: url, token: token)
                if json {
                    print(String(decoding: try APICoding.encode(["node_id": key.nodeID, "enrolled": now ? "now" : "already"]), as: UTF8.self))
                } else {
                    print("\(key.nodeID) \(now ? "enrolled with" : "was already enrolled with") \(url)")
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

}
