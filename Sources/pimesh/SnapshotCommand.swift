import ArgumentParser
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshFleetIndex
import PimeshRuntime
import PimeshSnapshot
import PimeshStore
import PimeshSystem

struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Consistent, LZ4-compressed, signed copies of the lead's database.",
        discussion: """
            A snapshot is a `VACUUM INTO` copy of <data-dir>/pimesh.db taken beside the running lead \
            (or without one), staged in the run dir, compressed as a standard LZ4 frame with a \
            content checksum (`lz4 -d` reads it) into <data-dir>/spool, with a JSON manifest \
            (node id, sequence, sizes, SHA-256 of both forms, schema version) signed by the node's \
            Ed25519 key (<data-dir>/node-key, made at first use, 0600). The spool keeps the newest \
            snapshots within snapshots.spool_max_count and spool_max_mb. See docs/snapshots.md.
            """,
        subcommands: [Create.self, List.self, Verify.self, Restore.self, Push.self],
        defaultSubcommand: List.self
    )

    struct Location: ParsableArguments {
        @Option(name: .long, help: "The lead's data dir (default: $PIMESH_DATA_DIR, else ./.pimesh).")
        var dataDir: String?

        @Option(name: .long, help: "Where the uncompressed copy is staged (default: $RUNTIME_DIRECTORY, else <data-dir>/run).")
        var runDir: String?

        @Option(name: .long, help: "The lead's config file, for the spool bounds (snapshots.*; default: \(DataDirLocator.systemConfig) when it exists).")
        var config: String?

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func settings() throws -> LeadConfig {
            let environment = ProcessEnvironment.current
            var settings = LeadConfig()
            if let systemd = environment["RUNTIME_DIRECTORY"], !systemd.isEmpty { settings.runDir = systemd }
            if let config = DataDirLocator.configFile(explicit: config) { settings = try ConfigLoader.load(path: config, base: settings) }
            settings.dataDir = try DataDirLocator.candidates(dataDir: dataDir, config: config, environment: environment)[0].dataDir
            if let runDir { settings.runDir = runDir }
            return settings
        }

        func spool(_ settings: LeadConfig) throws -> SnapshotSpool {
            try SnapshotSpool(
                directory: settings.dataDir + "/spool", maxCount: settings.snapshots.spoolMaxCount,
                maxBytes: UInt64(settings.snapshots.spoolMaxMB) << 20)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create", abstract: "Take a snapshot now and put it in the spool.",
            discussion: "Asks the running lead (POST /v1/snapshots) when there is one, else takes it directly from the data dir.")

        @OptionGroup var location: Location

        func run() async throws {
            do {
                let settings = try location.settings()
                if let client = try? LeadClient(dataDir: settings.dataDir, timeoutMs: 600_000),
                    let raw = try? client.post("/v1/snapshots", json: Array("{}".utf8))
                {
                    if location.json { return print(String(decoding: raw, as: UTF8.self)) }
                    let m = try APICoding.decode(SnapshotManifest.self, from: raw)
                    return print(
                        "snapshot \(m.sequence) of \(m.nodeID) by the lead: \(Format.megabytes(m.rawBytes)) → \(Format.megabytes(m.compressedBytes))\n"
                            + "\(settings.dataDir)/spool/\(m.file)")
                }
                let database = settings.dataDir + "/pimesh.db"
                guard FileIO.exists(database) else { throw CLIFailure("no database at \(database): is --data-dir right?") }
                let maker = SnapshotMaker(
                    databasePath: database, stagingDirectory: settings.resolvedRunDir, spool: try location.spool(settings),
                    key: try NodeKey.loadOrCreate(dataDir: settings.dataDir))
                let bar = ProgressLine(label: "compressing", enabled: !location.json && Terminal.isInteractive)
                let made = try maker.create { bar.show(bytes: $0) }
                bar.finish()
                if location.json { return print(String(decoding: try APICoding.encode(made.entry.manifest), as: UTF8.self)) }
                let m = made.entry.manifest
                print(
                    "snapshot \(m.sequence) of \(m.nodeID): \(Format.megabytes(m.rawBytes)) → \(Format.megabytes(m.compressedBytes)) "
                        + "(copy \(DecimalText.format(made.copyMs)) ms, compress \(DecimalText.format(made.compressMs)) ms)\n\(made.entry.filePath)")
                for dropped in made.dropped { print("dropped snapshot \(dropped.manifest.sequence) (spool bounds)") }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "The snapshots in the spool, oldest first.")

        @OptionGroup var location: Location

        func run() async throws {
            do {
                let spool = try location.spool(try location.settings())
                let (entries, unreadable) = spool.entries()
                if location.json {
                    return print(String(decoding: try APICoding.encode(entries.map(\.manifest)), as: UTF8.self))
                }
                var table = TextTable(["SEQ", "CREATED (UTC)", "RAW", "LZ4", "SHA-256 (LZ4)", "FILE"], rightAligned: [0, 2, 3])
                for entry in entries {
                    let m = entry.manifest
                    table.add([
                        String(m.sequence), UTCTime.iso8601(epochMs: m.createdAtMs), Format.megabytes(m.rawBytes), Format.megabytes(m.compressedBytes),
                        String(m.compressedSHA256.prefix(16)), entry.filePath,
                    ])
                }
                print(table.render() + "\n\(entries.count) snapshot\(entries.count == 1 ? "" : "s") in \(spool.directory)")
                for path in unreadable { print("unreadable manifest: \(path)") }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify", abstract: "Check a snapshot: signature, sizes, SHA-256 of both forms, the LZ4 checksum.",
            discussion: "Exits 1 and names what did not match when anything is wrong.")

        @Argument(help: "The snapshot's manifest (.json) or compressed file (.db.lz4).")
        var file: String

        @OptionGroup var trust: TrustedKeys

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func run() async throws {
            do {
                let report = try SnapshotVerifier.verify(file, trustedKeys: try trust.keys())
                if json {
                    struct Answer: Encodable {
                        var ok = true
                        var milliseconds: Double
                        var manifest: SnapshotManifest
                    }
                    return print(String(decoding: try APICoding.encode(Answer(milliseconds: report.milliseconds, manifest: report.manifest)), as: UTF8.self))
                }
                print(
                    "ok: snapshot \(report.manifest.sequence) of \(report.manifest.nodeID), \(Format.megabytes(report.manifest.rawBytes)), "
                        + "signature and checksums match (\(DecimalText.format(report.milliseconds)) ms)")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore", abstract: "Verify a snapshot and decompress it into DIR/pimesh.db, then check it with SQLite.",
            discussion: """
                DIR must not hold a pimesh.db: the restore never overwrites a database. To put a \
                node back: stop the lead, restore into a new dir, move it in place of the data dir's \
                pimesh.db (keep node-token and node-key), start the lead.
                """)

        @Argument(help: "The snapshot's manifest (.json) or compressed file (.db.lz4).")
        var file: String

        @Option(name: .long, help: "Where to put pimesh.db.")
        var to: String

        @OptionGroup var trust: TrustedKeys

        @Flag(name: .long, help: "Print JSON for scripts.")
        var json = false

        func run() async throws {
            do {
                let bar = ProgressLine(label: "restoring", enabled: !json && Terminal.isInteractive)
                let (report, integrity) = try SnapshotVerifier.restore(file, to: to, trustedKeys: try trust.keys()) { bar.show(bytes: $0) }
                bar.finish()
                guard integrity == "ok" else { throw CLIFailure("restored \(to)/pimesh.db, but SQLite's integrity check says: \(integrity)") }
                try AuditStore.markRestored(databasePath: to + "/pimesh.db", body: report.restoreMark(file: file))
                if json {
                    return print(#"{"ok": true, "database": "\#(to)/pimesh.db", "sequence": \#(report.manifest.sequence)}"#)
                }
                print(
                    "restored snapshot \(report.manifest.sequence) into \(to)/pimesh.db; integrity check ok; "
                        + "the next lead on it records the restore in its audit log")
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}

extension SnapshotCommand {
    /// Whose signatures a snapshot may carry (issue 12: a forged snapshot signed by any key was
    /// once restored): the node's own key, keys given by hand, keys enrolled in a coordinator.
    struct TrustedKeys: ParsableArguments {
        @Option(name: .long, help: "Trust this public key (64 hex digits); repeatable.")
        var publicKey: [String] = []

        @Option(name: .long, help: "Trust this node's own key (<dir>/node-key). Default: $PIMESH_DATA_DIR, else ./.pimesh.")
        var dataDir: String?

        @Option(name: .long, help: "Trust every node enrolled in the coordinator that keeps its files in DIR.")
        var coordinatorDir: String?

        func keys() throws -> [String] {
            var keys = publicKey
            for key in keys where Hex.decode(key)?.count != 32 {
                throw CLIFailure("--public-key \(key) is not an Ed25519 public key (64 hex digits)")
            }
            let dir = dataDir ?? LeadDiscovery.defaultDataDir(environment: ProcessEnvironment.current)
            if let own = try NodeKey.load(dataDir: dir) { keys.append(own.publicKeyHex) }
            if let coordinatorDir {
                // Opening a missing index would create an empty one, in a directory that is not the coordinator's.
                guard FileIO.exists(coordinatorDir + "/coordinator.db") else {
                    throw CLIFailure("--coordinator-dir \(coordinatorDir) holds no coordinator.db: pass the --dir that `pimesh-coordinator serve` uses")
                }
                keys += try CoordinatorStore(path: coordinatorDir + "/coordinator.db").enrolledKeys()
            }
            guard !keys.isEmpty else {
                let coordinator = coordinatorDir.map { ", and the coordinator in \($0) has no enrolled node" } ?? ""
                throw CLIFailure(
                    "no trusted key: \(dir)/node-key does not exist\(coordinator); pass --public-key HEX, --data-dir of the node, or --coordinator-dir")
            }
            return keys
        }
    }

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "push", abstract: "Upload every snapshot the configured target has not confirmed yet, now.",
            discussion: """
                The target comes from the config's upload section (coordinator, s3 or directory; \
                docs/snapshots.md). Each snapshot counts as uploaded only once the receiver confirmed \
                its checksum. Exits 1 if any upload failed; the lead retries on its own anyway.
                """)

        @OptionGroup var location: Location

        func run() async throws {
            do {
                let settings = try location.settings()
                guard let target = try settings.upload.target(environment: ProcessEnvironment.current) else {
                    throw CLIFailure("no upload target: set upload.target in the config (coordinator, s3 or directory)", exitCode: 78)
                }
                let spool = try location.spool(settings)
                // Through the helper, as the lead uploads: what a push shows is what the lead does.
                let uploader = SnapshotUploader(target: target, transport: HelperPut(environment: ProcessEnvironment.current))
                var results: [[String: String]] = []
                var failed = 0
                for entry in spool.pending(for: target.name) {
                    do {
                        let confirmation = try uploader.upload(entry)
                        try spool.markUploaded(entry, to: target.name, confirmation: confirmation)
                        results.append(["sequence": String(entry.manifest.sequence), "status": "uploaded", "detail": confirmation])
                    } catch {
                        failed += 1
                        results.append(["sequence": String(entry.manifest.sequence), "status": "failed", "detail": "\(error)"])
                    }
                }
                if location.json {
                    print(String(decoding: try APICoding.encode(results), as: UTF8.self))
                } else {
                    for result in results { print("snapshot \(result["sequence"]!): \(result["status"]!): \(result["detail"]!)") }
                    if results.isEmpty { print("nothing to upload: the target has every snapshot in the spool") }
                }
                if failed > 0 { throw CLIFailure("\(failed) upload(s) failed") }
            } catch {
                throw CLIFailure.report(error)
            }
        }
    }
}

/// One line on a terminal that shows how far a long step got, rewritten in place.
final class ProgressLine: @unchecked Sendable {
    let label: String
    let enabled: Bool
    private var lastShown = Clock.monotonicNow()

    init(label: String, enabled: Bool) {
        self.label = label
        self.enabled = enabled
    }

    func show(bytes: UInt64) {
        guard enabled, Clock.monotonicNow() - lastShown > .milliseconds(100) else { return }
        lastShown = Clock.monotonicNow()
        FileHandleStderr.write("\r\(label) \(Format.megabytes(bytes)) …")
    }

    func finish() {
        if enabled { FileHandleStderr.write("\r\u{1B}[K") }
    }
}
