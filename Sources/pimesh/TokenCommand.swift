import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshRuntime
import PimeshSystem

/// `pimesh token rotate operator|join`: a new token in the data dir, the old one refused at once.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Make or rotate the lead's operator and join tokens.",
        discussion: """
            The operator token (<data-dir>/node-token) may do everything; the join token \
            (<data-dir>/join-token) may only register attached agents. Agents have credentials of \
            their own and are not affected (docs/operations.md).
            """,
        subcommands: [Initialize.self, Rotate.self]
    )

    struct Initialize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Make the operator and join tokens that are missing, without a lead (the .deb's postinst runs it).",
            discussion: """
                Run it as the lead's user: the tokens are that user's own files (0600), and the lead \
                refuses tokens that belong to anyone else. Existing tokens are kept; running it \
                twice changes nothing.
                """)

        @Option(name: .long, help: "The lead's data directory (made 0700 when missing).")
        var dataDir: String

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func run() throws {
            do {
                let prepared = try LeadTokenFiles.prepare(dataDir: dataDir)
                if json {
                    print(String(decoding: try APICoding.encode(prepared), as: UTF8.self))
                } else {
                    for token in prepared { print("\(token.kind) token \(token.path): \(token.created ? "created" : "kept")") }
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate", abstract: "Replace a token: the lead writes the new one (0600) and refuses the old one from then on.",
            discussion: "After rotating the operator token, scripts that hold a copy must read node-token again.")

        @Argument(help: "operator or join")
        var kind: String

        @OptionGroup var options: ClientOptions

        func validate() throws {
            guard ["operator", "join"].contains(kind) else { throw ValidationError("the token is operator or join, not \"\(kind)\"") }
        }

        func run() async throws {
            do {
                let file = try options.locatedDataDir() + "/" + (kind == "operator" ? LeadEndpoint.tokenFileName : LeadEndpoint.joinTokenFileName)
                try options.act("/v1/tokens/\(kind)/rotate", done: "rotated the \(kind) token; the new one is in \(file)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
