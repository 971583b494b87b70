import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshRuntime
import PimeshStore
import PimeshSystem

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The tamper-evident audit log: every action of the lead and its operators (docs/audit.md).",
        discussion: """
            Each row names the hash of the row before it, and the node key signs the chain's tip every \
            audit.head_every_rows rows and at every snapshot; snapshots carry the newest head upstream.
            """,
        subcommands: [Tail.self, Verify.self])

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tail", abstract: "Show the newest audit rows; --follow keeps printing new ones.",
            discussion: """
                A time marked ~ was written before the clock was NTP-synchronised (a Pi has no RTC): trust the \
                order, not the time. With no lead running, the rows are read from <data-dir>/pimesh.db.
                """)

        @OptionGroup var options: ClientOptions

        @Option(name: [.customShort("n"), .short, .customLong("lines")], help: "How many of the newest rows to show first.")
        var lines = 20

        @Option(name: .long, help: "Only rows from this long ago: 30s, 10m, 2h, 1d.")
        var since: String?

        @Option(name: .long, help: "Only rows by this actor: lead, an agent's name, \"operator (token)\" (the CLI as root or the lead's user) or \"operator (uid 1000)\" (over api.sock).")
        var actor: String?

        @Option(name: .long, help: "Only rows of this kind: heal, agent_stop, restarted, degradation, lead_started, …")
        var kind: String?

        @Flag(name: [.short, .long], help: "Keep printing new rows until interrupted.")
        var follow = false

        func validate() throws {
            guard (1...5000).contains(lines) else { throw ValidationError("--lines must be 1…5000") }
            if let since, UTCTime.milliseconds(ofDuration: since) == nil {
                throw ValidationError("--since \(since) is not a duration like 30s, 10m, 2h, 1d or 1h30m")
            }
        }

        func run() async throws {
            do {
                var filter = AuditStore.Filter()
                filter.actor = actor
                filter.kind = kind
                if let since, let ms = UTCTime.milliseconds(ofDuration: since) { filter.sinceWallMs = Clock.wallMilliseconds() - ms }
                let fetch = try source(filter)
                var page = try fetch(nil)
                var headerShown = false
                while true {
                    print(page.records, headerShown: headerShown)
                    headerShown = headerShown || !options.json
                    if !follow && !page.more { return }
                    if !page.more {
                        fflushStdout()  // for a pipe, as `pimesh events --follow` does
                        try await Task.sleep(for: .milliseconds(500))
                    }
                    page = try fetch(page.next)
                }
            } catch {
                throw CLIFailure.report(error)
            }
        }

        /// Pages from the lead's API; when no lead runs (after a crash, say) from the database,
        /// read-only, for whoever may read it.
        private func source(_ filter: AuditStore.Filter) throws -> (_ after: Int64?) throws -> AuditPage {
            let dataDir = try options.locatedDataDir()
            if let client = try? LeadClient(dataDir: dataDir) {
                var query = ""
                if let actor = filter.actor { query += "&actor=" + Self.percentEncoded(actor) }
                if let kind = filter.kind { query += "&kind=" + Self.percentEncoded(kind) }
                if let since = filter.sinceWallMs { query += "&since_ms=\(since)" }
                return { after in
                    let path = after.map { "/v1/audit?after=\($0)" } ?? "/v1/audit?tail=\(lines)"
                    return try APICoding.decode(AuditPage.self, from: try client.get(path + query))
                }
            }
            let path = dataDir + "/pimesh.db"
            guard FileIO.exists(path) else { throw CLIFailure("no lead runs with data dir \(dataDir), and it holds no pimesh.db") }
            let store = AuditStore(database: try Database(path: path, readOnly: true))
            return { [lines] after in
                var page = filter
                page.afterSeq = after ?? 0
                let records = try store.records(page, limit: after == nil ? lines : 1000, newest: after == nil)
                return AuditPage(records: records, next: records.last?.seq ?? after ?? 0, more: after != nil && records.count == 1000)
            }
        }

        private func print(_ records: [AuditRecord], headerShown: Bool) {
            if options.json {
                for record in records { Swift.print(String(decoding: (try? APICoding.encode(record)) ?? [], as: UTF8.self)) }
                return
            }
            if records.isEmpty && headerShown { return }
            var table = TextTable(["SEQ", "TIME (UTC)", "ACTOR", "KIND", "SUBJECT", "BODY"], rightAligned: [0])
            for record in records {
                let time = UTCTime.iso8601(epochMs: record.wallMs, milliseconds: true) + (record.clockSynced ? "" : "~")
                table.add([String(record.seq), time, record.actor, record.kind, record.subject, Self.readable(record.body)])
            }
            let rows = table.render().split(separator: "\n", omittingEmptySubsequences: false)
            for row in headerShown ? Array(rows.dropFirst()) : rows { Swift.print(row) }
        }

        /// The body with its values unescaped, for people; --json keeps the canonical text.
        static func readable(_ body: String) -> String {
            guard let pairs = AuditBody.parse(body) else { return body }
            return pairs.map { "\($0.0)=\($0.1.contains(" ") ? "\"\($0.1)\"" : $0.1)" }.joined(separator: " ")
        }

        static func percentEncoded(_ text: String) -> String {
            var out = ""
            for byte in text.utf8 {
                if (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x2D || byte == 0x5F {
                    out.append(Character(Unicode.Scalar(byte)))
                } else {
                    out += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0x0F, radix: 16, uppercase: true)
                }
            }
            return out
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify", abstract: "Check the audit chain and its signed heads; name the first bad row. Exit 1 on any problem.",
            discussion: """
                Reads <data-dir>/pimesh.db read-only (the lead may be running) and trusts nothing in it. \
                A cut tail shows only against a head kept elsewhere: pass --heads-from with a coordinator's \
                directory, or a file saved from its GET /v1/nodes/{node}/audit-heads.
                """)

        @OptionGroup var options: ClientOptions

        @Option(name: .long, help: "Start at this row (the link to the row before it is still checked).")
        var since: Int64?

        @Option(name: .long, help: "Signed heads kept upstream: a coordinator's directory or a JSON file of heads.")
        var headsFrom: String?

        func run() async throws {
            let report: AuditVerification.Report
            do {
                let path = try options.locatedDataDir() + "/pimesh.db"
                let upstream = try headsFrom.map { try AuditVerification.upstreamHeads(from: $0, nodeKey: try AuditVerification.nodeKey(databasePath: path)) }
                report = try AuditVerification.run(databasePath: path, sinceSeq: since, upstream: upstream)
            } catch {
                throw CLIFailure.report(CLIFailure("\(error)", exitCode: 2))
            }
            if options.json {
                print(String(decoding: (try? APICoding.encode(report, pretty: true)) ?? [], as: UTF8.self))
            } else {
                let span = report.firstSeq.map { "rows \($0)…\(report.lastSeq ?? $0)" } ?? "no rows"
                let pruned = report.prunedThrough.map { ", pruned through \($0)" } ?? ""
                let heads = "\(report.localHeads) signed head(s) on the node, \(report.upstreamHeads) upstream"
                if report.ok {
                    print("ok: \(report.rows) rows (\(span)\(pruned)); \(heads); the chain is intact")
                } else {
                    print("FAILED: \(report.rows) rows checked (\(span)\(pruned)); \(heads)")
                    for problem in report.problems { print("  " + problem) }
                }
                for restore in report.restores { print("note: " + restore) }
            }
            if !report.ok { throw ExitCode(1) }
        }
    }
}
