import PimeshAgent

/// What `pimesh bench run` writes as report.json (and renders as report.md and report.svg).
public struct BenchReport: Codable, Sendable {
    public var pimeshVersion: String
    public var startedAtMs: Int64
    public var elapsedSeconds: Double
    public var machine: MachineInfo
    public var windowSeconds: Double
    /// From READY to each window (`--settle`); nil in reports written before it existed.
    public var settleSeconds: Double? = nil
    public var heartbeatIntervalMs: Int
    public var steps: [Step]
    /// Growth of the lead's private memory per added agent, between the smallest and largest step.
    public var perAgentPrivateBytes: Int?
    public var checks: [Check]
    /// Set when the steps ran against a lead that already ran (`--lead`): its figures include
    /// what it held before (its own agents), and no task or supervised kill was measured.
    public var runningLead: RunningLead? = nil

    public struct RunningLead: Codable, Sendable {
        public var dataDir: String
        public var pid: Int32
        /// Its agents before the first step (registered, whatever their state), and of those READY.
        public var agentsBefore: Int
        public var readyBefore: Int?
        /// Agents an earlier bench, killed before its cleanup, had left there; removed first.
        public var leftoversRemoved: Int?
    }

    public struct Step: Codable, Sendable {
        /// Simulated agents (one `pimesh swarm`) that take work as datagrams.
        public var agents: Int
        /// Supervised `pimesh sim-agent` processes beside them, killed to measure detection and respawn.
        public var supervisedAgents: Int
        public var readyAfterSeconds: Double
        public var lead: ProcessFigures
        public var heartbeats: Heartbeats
        public var nodeImpedance: Int
        public var tasks: Tasks?
        public var detection: Detection
        public var supervisord: Comparison?
        /// systemd (PID 1) with as many transient services (`--compare systemd-run`).
        public var systemd: Comparison? = nil
    }

    public struct Heartbeats: Codable, Sendable {
        /// Accepted and dropped from the status call before the settle to the window's end (a
        /// status call at the window's start would put back the code the settle let the lead
        /// trim); reports without `settle_seconds` counted the window only.
        public var accepted: Int
        public var dropped: Int
        public var droppedByReason: [String: Int]
    }

    public struct Tasks: Codable, Sendable {
        public var count: Int
        public var succeeded: Int
        public var otherOutcomes: Int
        public var tasksPerSecond: Double
        public var submitToResult: LatencySummary
    }

    public struct Detection: Codable, Sendable {
        /// kill -9 of a supervised agent until the lead records its exit.
        public var exitSeen: LatencySummary
        /// …until the restarted agent heartbeats again: what supervisord's respawn time compares with.
        public var heartbeatingAgain: LatencySummary
        /// kill -9 of an attached agent (no process the lead can see) until phi suspects it.
        public var phiSuspicion: LatencySummary
    }

    /// Another supervisor with as many programs, measured in the same window.
    public struct Comparison: Codable, Sendable {
        public var version: String
        public var programs: Int
        /// supervisord's own process; for systemd, PID 1.
        public var process: ProcessFigures
        /// kill -9 of a program until the supervisor has started its replacement.
        public var respawn: LatencySummary
    }

    public struct Check: Codable, Sendable {
        public var name: String
        public var limit: Double
        public var value: Double
        public var passed: Bool
    }
}

extension BenchReport {
    /// Per-agent private memory only means something across a wide span of agents: between 10
    /// and 100 the heap's noise is larger than the agents.
    static let perAgentSpan = 500
    public static let perAgentPrivateLimitBytes = 4096

    static func perAgentPrivateBytes(steps: [Step]) -> Int? {
        guard let small = steps.min(by: { $0.agents < $1.agents }), let large = steps.max(by: { $0.agents < $1.agents }),
            large.agents - small.agents >= perAgentSpan
        else { return nil }
        let grown = Double(large.lead.privateBytes) - Double(small.lead.privateBytes)
        return Int((grown / Double(large.agents - small.agents)).rounded())
    }

    static func checks(steps: [Step], perAgentPrivateBytes: Int?) -> [Check] {
        var checks: [Check] = []
        if let perAgentPrivateBytes {
            checks.append(
                Check(
                    name: "per_agent_private_bytes", limit: Double(perAgentPrivateLimitBytes), value: Double(perAgentPrivateBytes),
                    passed: perAgentPrivateBytes <= perAgentPrivateLimitBytes))
        }
        for step in steps {
            checks.append(
                Check(
                    name: "heartbeats_dropped_at_\(step.agents)", limit: 0, value: Double(step.heartbeats.dropped),
                    passed: step.heartbeats.dropped == 0))
        }
        return checks
    }
}
