import ArgumentParser
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshRuntime
import PimeshSystem

/// `pimesh playbooks`: the incident playbooks in force, and a check of playbook files before
/// they go into playbooks.d.
struct PlaybooksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "playbooks",
        abstract: "List the incident playbooks in force, or check playbook files (docs/incidents.md).",
        discussion: """
            Playbooks are tried in order: the operator's (playbooks.d beside agents.d, or \
            incidents.playbooks_dir), then the built-in ones that an operator's playbook of the same id \
            does not replace. `pimesh reload` reads playbooks.d again.
            """,
        subcommands: [List.self, Check.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The playbooks in force and the files refused.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            let raw: [UInt8]
            do {
                raw = try options.client().get("/v1/playbooks")
            } catch {
                throw CLIFailure.report(error)
            }
            if options.json {
                print(String(decoding: raw, as: UTF8.self))
                return
            }
            let listing = try APICoding.decode(PlaybookListing.self, from: raw)
            for playbook in listing.playbooks {
                print("\(playbook.id) (\(playbook.source)): \(playbook.title)")
                print("  when: \(playbook.causes.joined(separator: ", ")) at \(playbook.minSeverity) or worse; SLO \(playbook.sloS) s")
                for (index, step) in playbook.steps.enumerated() { print("  \(index + 1). \(step)") }
            }
            for refused in listing.refused { print("refused: \(refused)") }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check", abstract: "Validate playbook files (or every *.json in a directory) as the lead reads them.",
            discussion: "Names the file, line, key and reason of each problem. Exit status 78 (EX_CONFIG) when any file is refused.")
        @Argument(help: "Playbook files or directories.")
        var paths: [String]

        func run() async throws {
            var refused = 0
            for path in paths {
                var info = stat()
                let isDirectory = stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
                if isDirectory {
                    let (playbooks, errors) = PlaybookFile.loadDirectory(path)
                    for playbook in playbooks { print("\(playbook.source): ok (\(playbook.id), \(playbook.steps.count) steps)") }
                    for error in errors { FileHandleStderr.write("pimesh: \(error)\n") }
                    refused += errors.count
                    continue
                }
                do {
                    let bytes = try FileIO.read(path: path, limit: PlaybookFile.maxFileBytes + 1)
                    guard bytes.count <= PlaybookFile.maxFileBytes else {
                        throw CLIFailure("\(path): larger than \(PlaybookFile.maxFileBytes >> 10) KiB")
                    }
                    let playbook = try PlaybookFile.parse(text: String(decoding: bytes, as: UTF8.self), file: path)
                    print("\(path): ok (\(playbook.id), \(playbook.steps.count) steps)")
                } catch {
                    FileHandleStderr.write("pimesh: \(error)\n")
                    refused += 1
                }
            }
            if refused > 0 { throw ExitCode(78) }
        }
    }
}
