import ArgumentParser
import PimeshAgent

/// `pimesh token rotate operator|join`: a new token in the data dir, the old one refused at once.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Rotate the lead's operator or join token.",
        discussion: """
            The operator token (<data-dir>/node-token) may do everything; the join token \
            (<data-dir>/join-token) may only register attached agents. Agents have credentials of \
            their own and are not affected (docs/operations.md).
            """,
        subcommands: [Rotate.self]
    )

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a token: the lead writes the new one (0600) and refuses the old one from then on.",
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
