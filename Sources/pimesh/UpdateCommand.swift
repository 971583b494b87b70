import ArgumentParser
import Crypto
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshRelease
import PimeshRuntime
import PimeshSnapshot
import PimeshSystem

/// `pimesh update`: signed releases into `<data-dir>/releases`, switched atomically, committed
/// after a soak or rolled back (docs/pi.md, "Update and rollback").
struct UpdateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Replace the lead's binary with a signed release, and roll it back when it fails.",
        discussion: """
            A release is a pimesh binary and its Ed25519 signature (`pimesh update sign`), checked \
            against update.trusted_keys in the config. `apply` stages it as \
            <data-dir>/releases/<sha256>/pimesh, smoke-tests it, points `current` at it, restarts \
            the unit through systemd-run and commits once the new lead has been READY and healthy \
            for update.soak_s; otherwise `current` goes back to `previous` and the release is \
            marked `broken`. `pimesh run` executes `current` when there is one. Run it as root \
            (sudo), which systemctl needs; what it writes belongs to the data dir's owner.
            """,
        subcommands: [Apply.self, Rollback.self, Commit.self, Status.self, Info.self, Sign.self, Keygen.self]
    )

    static func updater(_ options: LocalConfigOptions, soak: Int?, json: Bool) throws -> ReleaseUpdater {
        var settings = try options.load()
        if let soak { settings.update.soakS = soak }
        var updater = ReleaseUpdater(dataDir: settings.dataDir, settings: settings.update, environment: ProcessEnvironment.current)
        if !json { updater.progress = { print($0) } }
        return updater
    }

    static func emit<T: Encodable>(_ value: T, json: Bool, text: String) throws {
        print(json ? String(decoding: try APICoding.encode(value), as: UTF8.self) : text)
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apply", abstract: "Verify, stage, switch to and restart into a release; commit it after the soak or roll it back.",
            discussion: "Exit status 0: committed (or already current); 1: refused or rolled back.")

        @Argument(help: "The release binary: a file or an http(s) URL.")
        var release: String

        @Option(name: .long, help: "Its signature, 128 hex digits in a file or at a URL (default: <release>.sig).")
        var signature: String?

        @Option(name: .long, help: "The SHA-256 the release must have (64 hex digits).")
        var sha256: String?

        @Option(name: .long, help: "Seconds the new lead must stay healthy before the commit (default: update.soak_s, 60).")
        var soak: Int?

        @Flag(name: .long, help: "Apply a release that was rolled back before.")
        var force = false

        @Flag(name: .long, help: "Switch `current` but do not restart; `pimesh update commit` after a restart by hand.")
        var noRestart = false

        @OptionGroup var options: LocalConfigOptions

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func validate() throws {
            if let sha256, !(sha256.utf8.count == 64 && Hex.decode(sha256.lowercased()) != nil) {
                throw ValidationError("--sha256 \(sha256) is not 64 hex digits")
            }
            if let soak, !(0...86_400).contains(soak) { throw ValidationError("--soak \(soak) is not 0…86400 seconds") }
        }

        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            do {
                let updater = try UpdateCommand.updater(options, soak: soak, json: json)
                let report = try updater.apply(source: release, signature: signature, expectedDigest: sha256, force: force, restart: !noRestart)
                try UpdateCommand.emit(report, json: json, text: report.detail)
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rollback", abstract: "Point `current` back at `previous` (or the packaged binary), mark the release broken and restart.",
            discussion: """
                pimesh-rollback.service runs it with --if-pending --no-restart when pimesh.service \
                has failed to start too often (OnFailure=): a release that was never committed is \
                taken back with no updater alive. Exit status 3: nothing was rolled back.
                """)

        @Option(name: .long, help: "Why, kept in releases/<sha>/broken.")
        var reason = "rolled back by an operator"

        @Flag(name: .long, help: "Only roll back a release that is not committed yet.")
        var ifPending = false

        @Flag(name: .long, help: "Only switch the links; the caller restarts the unit.")
        var noRestart = false

        @OptionGroup var options: LocalConfigOptions

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            let rolledBack: Bool
            do {
                let updater = try UpdateCommand.updater(options, soak: nil, json: json)
                let report = try updater.rollBack(reason: reason, restart: !noRestart, onlyPending: ifPending)
                try UpdateCommand.emit(report, json: json, text: report.detail)
                rolledBack = report.rolledBack
            } catch {
                throw CLIFailure.report(error)
            }
            // pimesh-rollback.service: a failure skips its ExecStartPost, so a lead that fails
            // for another reason (config, disk) is not started again and again.
            if !rolledBack { throw ExitCode(3) }
        }
    }

    struct Commit: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "commit", abstract: "Commit a release switched with --no-restart, once the running lead is it.")

        @OptionGroup var options: LocalConfigOptions

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            do {
                let report = try UpdateCommand.updater(options, soak: nil, json: json).commit()
                try UpdateCommand.emit(report, json: json, text: report.detail)
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "The releases, the links and what the running lead runs.")

        @OptionGroup var options: LocalConfigOptions

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        struct Report: Encodable {
            var running: String?
            var runningVersion: String?
            var current: String?
            var previous: String?
            var broken: String?
            var pending: ReleaseStore.Pending?
            /// Why the running lead did not run `current` (lead.json's `release_refused`).
            var refused: String?
            /// A rollback across a schema migration: the snapshot the next lead restores if its
            /// database is newer than it knows (or why the mark cannot be read).
            var restoreAtNextStart: String?
            var releases: [Release]

            struct Release: Encodable {
                var sha256: String
                var broken: String?
            }
        }

        static func restoreMark(dataDir: String) -> String? {
            do {
                return try MigrationRollback.pendingMark(dataDir: dataDir).map { mark in
                    "\(mark.snapshot) at the next start if the database is newer than the lead knows "
                        + "(release \(mark.release.map { String($0.prefix(16)) } ?? "?") was rolled back)"
                }
            } catch {
                return "unreadable: \(error)"
            }
        }

        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            do {
                let store = ReleaseStore(dataDir: try options.load().dataDir)
                let lead = try? LeadDiscovery.endpoint(dataDir: store.dataDir)
                let report = Report(
                    running: lead?.release, runningVersion: lead?.version, current: store.release(at: .current),
                    previous: store.release(at: .previous), broken: store.release(at: .broken), pending: store.pending,
                    refused: lead?.releaseRefused, restoreAtNextStart: Self.restoreMark(dataDir: store.dataDir), releases: store.releases().map { .init(sha256: $0, broken: store.brokenReason($0)) })
                let name: (String?) -> String = { $0.map { String($0.prefix(16)) } ?? "packaged binary" }
                var lines = [
                    "running:  " + (lead.map { "\(name($0.release)) (pimesh \($0.version), pid \($0.pid))" } ?? "no lead"),
                    "current:  " + name(report.current), "previous: " + name(report.previous),
                    "broken:   " + (report.broken.map { String($0.prefix(16)) } ?? "none"),
                ]
                if let pending = report.pending { lines.append("pending:  \(name(pending.release)) (not committed)") }
                if let refused = report.refused { lines.append("refused:  \(refused)") }
                if let restore = report.restoreAtNextStart { lines.append("restore:  \(restore)") }
                for release in report.releases { lines.append("  \(release.sha256)" + (release.broken.map { "  broken: \($0)" } ?? "")) }
                try UpdateCommand.emit(report, json: json, text: lines.joined(separator: "\n"))
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "info", abstract: "This binary's version, store schema and architecture (the smoke test `apply` runs on a new release).")

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            let info = ReleaseUpdater.BinaryInfo.this
            try UpdateCommand.emit(info, json: json, text: "pimesh \(info.version), store schema \(info.storeSchema), ELF machine \(info.machine)")
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign", abstract: "Sign a release binary with a release key (from `pimesh update keygen`): writes <binary>.sig.")

        @Argument(help: "The release binary.")
        var binary: String

        @Option(name: .long, help: "The private release key file (64 hex digits, 0600).")
        var key: String

        @Option(name: .long, help: "Where the signature goes (default: <binary>.sig).")
        var out: String?

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        struct Signed: Encodable {
            var sha256: String
            var signature: String
            var file: String
            var publicKey: String
        }


        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            do {
                let privateKey = try Keygen.load(key)
                let (fd, _) = try FileIO.openRegular(path: binary)
                defer { close(fd) }
                let digest = Hex.encode(try LZ4Frame.sha256(of: fd).digest)
                let signature = Hex.encode(Array(try privateKey.signature(for: ReleaseUpdater.signedMessage(digest: digest))))
                let file = out ?? binary + ".sig"
                try FileIO.writeAtomically(path: file, bytes: Array((signature + "\n").utf8), mode: 0o644)
                let signed = Signed(sha256: digest, signature: signature, file: file, publicKey: Hex.encode(Array(privateKey.publicKey.rawRepresentation)))
                try UpdateCommand.emit(signed, json: json, text: "signed release \(digest)\n\(file)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keygen", abstract: "Make a release signing key (0600); its public key goes into update.trusted_keys on every node.",
            discussion: "Keep the private key off the nodes: whoever holds it can update every lead that trusts it.")

        @Option(name: .long, help: "The private key file to create (refused when it exists).")
        var out: String

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        static func load(_ path: String) throws -> Curve25519.Signing.PrivateKey {
            let (bytes, info) = try FileIO.readWithStatus(path: path, limit: 4096)
            if info.st_mode & 0o077 != 0 {
                throw CLIFailure("\(path) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 it")
            }
            let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
            guard let bytes = Hex.decode(text), bytes.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: bytes) else {
                throw CLIFailure("\(path) is not a release key (64 hex digits from `pimesh update keygen`)")
            }
            return key
        }

        @_optimize(size)  // cold: an operator's command (the 25 MB budget)
        func run() throws {
            do {
                guard !FileIO.linkExists(out) else { throw CLIFailure("\(out) exists; a key is never overwritten") }
                let key = Curve25519.Signing.PrivateKey()
                try FileIO.writeAtomically(path: out, bytes: Array((Hex.encode(Array(key.rawRepresentation)) + "\n").utf8), mode: 0o600, replacing: false)
                let publicKey = Hex.encode(Array(key.publicKey.rawRepresentation))
                try UpdateCommand.emit(
                    ["key": out, "public_key": publicKey], json: json,
                    text: "release key \(out) (0600)\npublic key for update.trusted_keys: \(publicKey)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}
