import ArgumentParser
import Glibc
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

/// Posts an operator verb for one agent and prints what the lead did; with --json the lead's
/// answer is returned for the caller to print.
private func operatorVerb(_ options: ClientOptions, agent: String, verb: String) throws -> [UInt8] {
    struct Answer: Decodable {
        var agent: String
        var action: String
    }
    let raw = try options.client().post("/v1/agents/\(agent)/\(verb)", json: Array("{}".utf8))
    if !options.json {
        let answer = try APICoding.decode(Answer.self, from: raw)
        print("\(answer.agent): \(answer.action)")
    }
    return raw
}

struct HealCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heal",
        abstract: "Restart a supervised agent now, or run an attached agent's heal command.",
        discussion: """
            This is the operator's word (authority tier L2): it also carries out any healing \
            that waits for an operator (shown in `pimesh status` under awaiting operator) and \
            resets the agent's restart backoff. A supervised agent is killed (SIGKILL) and \
            started again at once; an attached agent gets its manifest's heal_command \
            (default `podman restart {name}`), whose output goes to <run_dir>/logs/NAME.heal.log. \
            With no agent, or `auto` (seed 001's default), it heals every agent whose healing \
            waits for an operator.
            """
    )

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id; default auto: every agent awaiting an operator.")
    var agent: String = "auto"

    func run() async throws {
        do {
            guard agent == "auto" else {
                let raw = try operatorVerb(options, agent: agent, verb: "heal")
                if options.json { print(String(decoding: raw, as: UTF8.self)) }
                return
            }
            let status = try APICoding.decode(StatusReport.self, from: try options.client().get("/v1/status"))
            let names = (status.health?.awaitingOperator ?? []).compactMap { $0.split(separator: ":").first.map(String.init) }
            guard !names.isEmpty else {
                print(options.json ? "[]" : "nothing awaits an operator")
                return
            }
            var failures = 0
            var answers: [[UInt8]] = []
            defer { if options.json { print(jsonArray(answers)) } }
            for name in Set(names).sorted() {
                do {
                    answers.append(try operatorVerb(options, agent: name, verb: "heal"))
                } catch {
                    failures += 1
                    FileHandleStderr.write("pimesh: \(name): \(error)\n")
                }
            }
            if failures > 0 { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw CLIFailure.report(error)
        }
    }
}

struct FreezeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freeze",
        abstract: "Stop a supervised agent in place (cgroup.freeze, else SIGSTOP) until thawed.",
        discussion: """
            A frozen agent keeps its memory and its work but uses no CPU. It is not suspected \
            while frozen, and it takes no new tasks; what it holds waits for it. --all freezes \
            every supervised agent (seed 001's `freeze(scope='all')`, for emergencies); \
            --capability those with it. `pimesh thaw` takes the same selectors.
            """
    )

    @OptionGroup var options: ClientOptions
    @OptionGroup var selection: AgentCommand.Selection

    func run() async throws {
        try AgentCommand.run("freeze", options: options, selection: selection)
    }
}

struct ThawCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thaw", abstract: "Let frozen agents run again (cgroup.freeze 0, else SIGCONT).")

    @OptionGroup var options: ClientOptions
    @OptionGroup var selection: AgentCommand.Selection

    func run() async throws {
        try AgentCommand.run("thaw", options: options, selection: selection)
    }
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a supervised agent's output, with the lead's events for it beside it.",
        discussion: """
            Each line shows when the lead read it (UTC), its stream and its text: `out` is the \
            agent's stdout and stderr (one pipe), `lead` what the lead wrote into the log (starts, \
            adoptions, dropped bytes), `event` the lead's health events for the agent (exits, \
            restarts, detection, operator actions). Logs live in <run_dir>/logs/NAME.log (tmpfs on \
            a Pi), rotated past supervision.log_max_kb; events are the newest 2,048 of the node. \
            --json prints one object per line: time_ms, time, stream, text.
            """)

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id.")
    var agent: String

    @Flag(name: .shortAndLong, help: "Keep printing new lines until interrupted, across lead restarts.")
    var follow = false

    @Option(name: [.customShort("n"), .long], help: "How many of the last lines; 0: all that --bytes reads.")
    var tail: Int = 100

    @Option(name: .long, help: "Only lines newer than this: 30s, 10m, 2h, 1d, 1h30m.")
    var since: String?

    @Option(name: .long, help: "How much of the log file to read at most, in bytes (1048576 is 1 MiB).")
    var bytes: Int = 1 << 20

    @Flag(name: .long, help: "Leave the lead's health events out.")
    var noEvents = false

    func validate() throws {
        guard (1...(16 << 20)).contains(bytes) else { throw ValidationError("--bytes must be between 1 and 16777216") }
        guard tail >= 0 else { throw ValidationError("--tail must be 0 or more") }
        if let since, UTCTime.milliseconds(ofDuration: since) == nil {
            throw ValidationError("--since \(since) is not a duration like 30s, 10m, 2h, 1d or 1h30m")
        }
    }

    struct Line: Encodable {
        var timeMs: Int64
        var time: String
        var stream: String
        var text: String
    }

    func run() async throws {
        do {
            let client = try options.client()
            let cutoff = since.flatMap(UTCTime.milliseconds(ofDuration:)).map { Clock.wallMilliseconds() - $0 }
            let log = try readLog(client, bytes: bytes)
            // Events name agents by name; the argument may be an id (prefix).
            let name = try APICoding.decode(AgentView.self, from: try client.get("/v1/agents/\(agent)")).name
            var (events, eventCursor) = noEvents ? ([], 0) : try readEvents(client, of: name, after: 0)
            var lines = Self.merge(log.map(\.line), events)
            if let cutoff { lines.removeAll { $0.timeMs < cutoff } }
            if tail > 0, lines.count > tail { lines.removeFirst(lines.count - tail) }
            try print(lines)
            guard follow else { return }
            var lastRaw = log.last?.raw
            var lastTime = log.last?.line.timeMs ?? 0
            while true {
                try await Task.sleep(for: .milliseconds(500))
                do {
                    let client = try options.client()
                    let fresh = try readLog(client, bytes: 256 * 1024)
                    let newer: ArraySlice<(raw: Substring, line: AgentLogLine)>
                    if let lastRaw, let index = fresh.lastIndex(where: { $0.raw == lastRaw }) {
                        newer = fresh[(index + 1)...]
                    } else {
                        newer = fresh.filter { $0.line.timeMs > lastTime }[...]
                    }
                    if !noEvents { (events, eventCursor) = try readEvents(client, of: name, after: eventCursor) }
                    if let last = newer.last {
                        lastRaw = last.raw
                        lastTime = last.line.timeMs
                    }
                    try print(Self.merge(newer.map(\.line), events))
                } catch {
                    // The lead restarts, or is gone for a moment: keep following, as journalctl -f does.
                    continue
                }
            }
        } catch let error as CancellationError {
            throw error
        } catch {
            throw CLIFailure.report(error)
        }
    }

    /// The log's lines, oldest first; a first line cut by the byte limit is left out, and a line
    /// without a stamp takes the time of the one before it.
    func readLog(_ client: LeadClient, bytes: Int) throws -> [(raw: Substring, line: AgentLogLine)] {
        let raw = try client.get("/v1/agents/\(agent)/logs?bytes=\(bytes)")
        var rows = String(decoding: raw, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        if rows.last == "" { rows.removeLast() }
        if raw.count >= bytes, !rows.isEmpty { rows.removeFirst() }
        var previous: Int64 = 0
        return rows.map { row in
            let line = AgentLogLine.parse(row) ?? AgentLogLine(timeMs: previous, stream: .out, text: String(row))
            previous = line.timeMs
            return (row, line)
        }
    }

    /// The agent's events after `sequence`, and the cursor for the next call (the log's own).
    func readEvents(_ client: LeadClient, of name: String, after sequence: UInt64) throws -> ([AgentLogLine], UInt64) {
        let list = try APICoding.decode(HealthEventList.self, from: try client.get("/v1/events?since=\(sequence)&limit=10000"))
        let lines = list.events.filter { $0.agent == name }.map { event in
            AgentLogLine(timeMs: event.atMs, stream: .event, text: "\(event.kind)\(event.tier.map { " [\($0)]" } ?? ""): \(event.detail)")
        }
        return (lines, list.next)
    }

    /// Two time-ordered lists as one, stable: at equal times the log line comes first.
    static func merge(_ log: [AgentLogLine], _ events: [AgentLogLine]) -> [AgentLogLine] {
        var merged: [AgentLogLine] = []
        merged.reserveCapacity(log.count + events.count)
        var i = 0
        var j = 0
        while i < log.count || j < events.count {
            if j >= events.count || (i < log.count && log[i].timeMs <= events[j].timeMs) {
                merged.append(log[i])
                i += 1
            } else {
                merged.append(events[j])
                j += 1
            }
        }
        return merged
    }

    func print(_ lines: [AgentLogLine]) throws {
        var out = ""
        for line in lines {
            if options.json {
                let json = Line(timeMs: line.timeMs, time: UTCTime.iso8601(epochMs: line.timeMs, milliseconds: true), stream: line.stream.rawValue, text: line.text)
                out += String(decoding: try APICoding.encode(json), as: UTF8.self) + "\n"
            } else {
                out += line.rendered + "\n"
            }
        }
        FileHandleStdout.write(Array(out.utf8))
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show the lead's health events: detection, exits, restarts, heals, breakers, degradation.",
        discussion: "The log is kept in RAM (the newest 2,048 events). --follow prints new events as they come.")

    @OptionGroup var options: ClientOptions

    @Option(name: .long, help: "Only events after this sequence number.")
    var since: UInt64 = 0

    @Flag(name: .long, help: "Keep printing new events until interrupted.")
    var follow = false

    func run() async throws {
        do {
            let client = try options.client()
            var since = since
            var headerShown = false
            repeat {
                let list = try APICoding.decode(HealthEventList.self, from: try client.get("/v1/events?since=\(since)"))
                if options.json {
                    for event in list.events { print(String(decoding: try APICoding.encode(event), as: UTF8.self)) }
                } else if !list.events.isEmpty || !headerShown {
                    // One table per batch; with --follow the header comes once, and columns are
                    // as wide as the first batch made them.
                    var table = TextTable(["SEQ", "TIME (UTC)", "KIND", "TIER", "AGENT", "DETAIL"], rightAligned: [0])
                    for event in list.events {
                        table.add([
                            String(event.sequence), UTCTime.iso8601(epochMs: event.atMs), event.kind, event.tier ?? "–", event.agent ?? "–",
                            event.detail,
                        ])
                    }
                    let rows = table.render().split(separator: "\n", omittingEmptySubsequences: false)
                    for row in headerShown ? Array(rows.dropFirst()) : rows { print(row) }
                    headerShown = true
                }
                since = list.next
                // A pipe (`| grep`, `| while read`) would otherwise see nothing until 4 KiB piled up.
                if follow {
                    fflushStdout()
                    try await Task.sleep(for: .milliseconds(250))
                }
            } while follow
        } catch {
            throw CLIFailure.report(error)
        }
    }
}

enum FileHandleStdout {
    static func write(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if written <= 0 { return }
            offset += written
        }
    }
}
