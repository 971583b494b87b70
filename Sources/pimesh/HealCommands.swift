import ArgumentParser
import Glibc
import PimeshAgent

/// Posts an operator verb for one agent and prints what the lead did.
private func operatorVerb(_ options: ClientOptions, agent: String, verb: String) throws {
    struct Answer: Decodable {
        var agent: String
        var action: String
    }
    let raw = try options.client().post("/v1/agents/\(agent)/\(verb)", json: Array("{}".utf8))
    if options.json {
        print(String(decoding: raw, as: UTF8.self))
    } else {
        let answer = try APICoding.decode(Answer.self, from: raw)
        print("\(answer.agent): \(answer.action)")
    }
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
            (default `podman restart {name}`), whose output goes to <run_dir>/logs/NAME.heal.log.
            """
    )

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id.")
    var agent: String

    func run() async throws {
        do { try operatorVerb(options, agent: agent, verb: "heal") } catch { throw CLIFailure.report(error) }
    }
}

struct FreezeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freeze",
        abstract: "Stop a supervised agent in place (cgroup.freeze, else SIGSTOP) until thawed.",
        discussion: """
            A frozen agent keeps its memory and its work but uses no CPU. It is not suspected \
            while frozen, and it takes no new tasks; what it holds waits for it.
            """
    )

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id.")
    var agent: String

    func run() async throws {
        do { try operatorVerb(options, agent: agent, verb: "freeze") } catch { throw CLIFailure.report(error) }
    }
}

struct ThawCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thaw", abstract: "Let a frozen agent run again (cgroup.freeze 0, else SIGCONT).")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id.")
    var agent: String

    func run() async throws {
        do { try operatorVerb(options, agent: agent, verb: "thaw") } catch { throw CLIFailure.report(error) }
    }
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print the end of a supervised agent's stdout/stderr log.",
        discussion: "Logs live in <run_dir>/logs/NAME.log (tmpfs on a Pi), rotated past supervision.log_max_kb.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The agent's name or id.")
    var agent: String

    @Option(name: .long, help: "How many bytes from the end.")
    var bytes: Int = 8192

    func validate() throws {
        guard (1...(16 << 20)).contains(bytes) else { throw ValidationError("--bytes must be between 1 and 16777216") }
    }

    func run() async throws {
        do {
            let raw = try options.client().get("/v1/agents/\(agent)/logs?bytes=\(bytes)")
            FileHandleStdout.write(raw)
        } catch {
            throw CLIFailure.report(error)
        }
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
            repeat {
                let list = try APICoding.decode(HealthEventList.self, from: try client.get("/v1/events?since=\(since)"))
                for event in list.events {
                    if options.json {
                        print(String(decoding: try APICoding.encode(event), as: UTF8.self))
                    } else {
                        let tier = event.tier.map { " [\($0)]" } ?? ""
                        print("\(event.sequence)  \(event.atMs)  \(event.kind)\(tier)  \(event.agent ?? "-")  \(event.detail)")
                    }
                }
                since = list.next
                if follow { try await Task.sleep(for: .milliseconds(250)) }
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
