import PimeshAgent
import PimeshCore

extension BenchReport {
    /// report.md: the machine, one row per step, and the comparison when there is one.
    public func markdown() -> String {
        func mib(_ bytes: UInt64) -> String { DecimalText.format(Double(bytes) / 1_048_576, places: 1) }
        func ms(_ value: Double) -> String { DecimalText.format(value, places: 1) }
        /// "p50 / p99 (n=…)", or a dash where nothing was measured (no trials asked for).
        func pair(_ summary: LatencySummary, count: Bool = false) -> String {
            guard summary.count > 0 else { return "–" }
            return "\(ms(summary.p50Ms)) / \(ms(summary.p99Ms))" + (count ? " (n=\(summary.count))" : "")
        }
        let onRunningLead = runningLead.map { lead in
            "\n\nMeasured on a running lead (pid \(lead.pid), data dir \(Self.markdownText(lead.dataDir))) that held "
                + "\(lead.agentsBefore) agent\(lead.agentsBefore == 1 ? "" : "s") of its own"
                + (lead.readyBefore.map { " (\($0) READY)" } ?? "") + "; each step's agents came on top of those, offering only "
                + "`\(LoadBenchmark.benchCapability)`, so that none of the node's tasks went to them. No task was submitted and no agent "
                + "was killed there (its incidents, breakers and health level would have counted it)."
                + ((lead.leftoversRemoved ?? 0) > 0 ? " First, \(lead.leftoversRemoved!) agent\(lead.leftoversRemoved == 1 ? "" : "s") an earlier, killed bench had left there \(lead.leftoversRemoved == 1 ? "was" : "were") removed." : "")
        } ?? ""
        var text = """
            # pimesh bench run

            pimesh \(Self.markdownText(pimeshVersion)) on \(Self.markdownText(machine.cpuModel)), \(machine.cores) cores, \
            \(mib(machine.memoryBytes)) MiB RAM, \(Self.markdownText(machine.kernel)) (\(Self.markdownText(machine.architecture))); \
            data dir on \(Self.markdownText(machine.storage)). \
            Window \(DecimalText.format(windowSeconds, places: 0)) s per step\(settleSeconds.map { ", from \(DecimalText.format($0, places: 1)) s after every agent was READY" } ?? ""), heartbeats every \(heartbeatIntervalMs) ms; \
            the whole run took \(DecimalText.format(elapsedSeconds, places: 0)) s.\(onRunningLead)

            ![memory, CPU and latency against agents](report.svg)

            ## The lead

            Agents are one `pimesh swarm` that takes work as datagrams, plus \(steps.first?.supervisedAgents ?? 0) supervised \
            `pimesh sim-agent` processes. Memory is the lead's alone (smaps_rollup), at the window's end; CPU is user + system \
            over the window; storage is the lead's write_bytes as a rate; heartbeats are counted\(settleSeconds == nil ? " in the window" : " over the settle and the window")\
            .

            | agents | PSS MiB | private MiB | CPU % of a core | heartbeats accepted / dropped | node impedance | storage MB/h | ready after s |
            |---:|---:|---:|---:|---:|---:|---:|---:|

            """
        for step in steps {
            text += "| \(step.agents) | \(mib(step.lead.pssBytes)) | \(mib(step.lead.privateBytes)) | "
            text += "\(DecimalText.format(step.lead.cpuPercentOfCore, places: 2)) | \(step.heartbeats.accepted) / \(step.heartbeats.dropped) | "
            text += "\(step.nodeImpedance) | \(DecimalText.format(Double(step.lead.storageWriteBytesPerHour) / 1e6, places: 2)) | "
            text += "\(DecimalText.format(step.readyAfterSeconds, places: 1)) |\n"
        }
        text += """

            ## Latency (ms)

            | agents | tasks | tasks/s | submit → result p50 / p90 / p99 / max | kill -9 → exit seen p50 / p99 | → heartbeating again p50 / p99 | attached kill → phi suspicion p50 / p99 |
            |---:|---:|---:|---:|---:|---:|---:|

            """
        for step in steps {
            let tasks = step.tasks
            let result = tasks.map(\.submitToResult) ?? .empty
            text += "| \(step.agents) | \(tasks.map { "\($0.succeeded)/\($0.count)" } ?? "–") | "
            text += "\(tasks.map { DecimalText.format($0.tasksPerSecond, places: 0) } ?? "–") | "
            text += result.count == 0 ? "– | " : "\(ms(result.p50Ms)) / \(ms(result.p90Ms)) / \(ms(result.p99Ms)) / \(ms(result.maxMs)) | "
            text += "\(pair(step.detection.exitSeen, count: true)) | \(pair(step.detection.heartbeatingAgain)) | "
            text += "\(pair(step.detection.phiSuspicion, count: true)) |\n"
        }
        let comparisons: [(name: String, about: String, of: (Step) -> Comparison?)] = [
            (
                "supervisord",
                "The same number of programs (`sleep infinity`) under supervisord, measured in the same window. "
                    + "Its respawn is kill -9 until a new process stands in its place",
                { $0.supervisord }
            ),
            (
                "systemd",
                "The same number of transient services (`systemd-run`, `Restart=always`, `sleep infinity`) under "
                    + "systemd, measured in the same window; its figures are PID 1's, which also manages the rest of the "
                    + "system. Its respawn is kill -9 until a new process is in the unit's cgroup, after systemd's default "
                    + "100 ms `RestartSec`",
                { $0.systemd }
            ),
        ]
        for comparison in comparisons where steps.contains(where: { comparison.of($0) != nil }) {
            text += """

                ## Beside \(comparison.name)

                \(comparison.about); pimesh's is until the new agent has registered and heartbeats again.

                | agents | \(comparison.name) | PSS MiB (pimesh) | private MiB (pimesh) | CPU % (pimesh) | respawn p50 / p99 ms (pimesh heartbeating again) |
                |---:|---|---:|---:|---:|---:|

                """
            for step in steps {
                guard let other = comparison.of(step) else { continue }
                text += "| \(step.agents) | \(Self.markdownText(other.version)) | \(mib(other.process.pssBytes)) (\(mib(step.lead.pssBytes))) | "
                text += "\(mib(other.process.privateBytes)) (\(mib(step.lead.privateBytes))) | "
                text += "\(DecimalText.format(other.process.cpuPercentOfCore, places: 2)) (\(DecimalText.format(step.lead.cpuPercentOfCore, places: 2))) | "
                text += "\(pair(other.respawn)) (\(pair(step.detection.heartbeatingAgain))) |\n"
            }
        }
        text += "\n## Checks\n\n"
        if let perAgentPrivateBytes {
            text += "Per-agent private memory: \(perAgentPrivateBytes) bytes (growth from the smallest to the largest step).\n\n"
        } else {
            text += "Per-agent private memory needs steps at least \(Self.perAgentSpan) agents apart.\n\n"
        }
        for check in checks {
            text += "- \(check.passed ? "pass" : "FAIL"): \(check.name) = \(DecimalText.format(check.value, places: 0)) (limit \(DecimalText.format(check.limit, places: 0)))\n"
        }
        return text
    }

    /// report.svg: three panels against the agents of each step (an even axis: steps usually grow
    /// tenfold): memory, CPU, latency percentiles.
    public func svg() -> String {
        let labels = steps.map { String($0.agents) }
        var memory: [ChartSeries] = [
            .init(name: "lead PSS", color: "#1f77b4", values: steps.map { Double($0.lead.pssBytes) / 1_048_576 }),
            .init(name: "lead private", color: "#1f77b4", dashed: true, values: steps.map { Double($0.lead.privateBytes) / 1_048_576 }),
        ]
        var cpu: [ChartSeries] = [.init(name: "lead", color: "#1f77b4", values: steps.map(\.lead.cpuPercentOfCore))]
        // A supervisor is drawn when every step measured it: a line needs a point at each step.
        let others: [(name: String, color: String, of: (Step) -> Comparison?)] = [
            ("supervisord", "#d62728", { $0.supervisord }), ("systemd", "#8c564b", { $0.systemd }),
        ]
        for other in others {
            let figures = steps.compactMap { other.of($0)?.process }
            guard figures.count == steps.count, !steps.isEmpty else { continue }
            memory.append(.init(name: "\(other.name) PSS", color: other.color, values: figures.map { Double($0.pssBytes) / 1_048_576 }))
            memory.append(
                .init(name: "\(other.name) private", color: other.color, dashed: true, values: figures.map { Double($0.privateBytes) / 1_048_576 }))
            cpu.append(.init(name: other.name, color: other.color, values: figures.map(\.cpuPercentOfCore)))
        }
        let latency: [ChartSeries] = [
            .init(name: "task p50", color: "#2ca02c", values: steps.map { $0.tasks?.submitToResult.p50Ms ?? 0 }),
            .init(name: "task p99", color: "#2ca02c", dashed: true, values: steps.map { $0.tasks?.submitToResult.p99Ms ?? 0 }),
            .init(name: "phi suspicion p99", color: "#9467bd", values: steps.map(\.detection.phiSuspicion.p99Ms)),
            .init(name: "restart, heartbeating p99", color: "#ff7f0e", values: steps.map(\.detection.heartbeatingAgain.p99Ms)),
        ]
        let panelWidth = 320.0, panelHeight = 300.0
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(panelWidth * 3))" height="\(Int(panelHeight + 30))" viewBox="0 0 \(Int(panelWidth * 3)) \(Int(panelHeight + 30))" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="#ffffff"/>
            <text x="8" y="16" font-weight="bold">\(Self.escape("pimesh \(pimeshVersion) · \(machine.cpuModel) · \(machine.cores) cores · window \(Int(windowSeconds)) s"))</text>

            """
        svg += Self.panel(title: "memory (MiB)", labels: labels, series: memory, x: 0, y: 30, width: panelWidth, height: panelHeight)
        svg += Self.panel(title: "CPU (% of one core)", labels: labels, series: cpu, x: panelWidth, y: 30, width: panelWidth, height: panelHeight)
        svg += Self.panel(title: "latency (ms)", labels: labels, series: latency, x: panelWidth * 2, y: 30, width: panelWidth, height: panelHeight)
        return svg + "</svg>\n"
    }

    struct ChartSeries {
        var name: String
        var color: String
        var dashed = false
        var values: [Double]
    }

    private static func panel(
        title: String, labels: [String], series: [ChartSeries], x: Double, y: Double, width: Double, height: Double
    ) -> String {
        let left = x + 46, right = x + width - 12, top = y + 22, legendHeight = Double(series.count) * 14 + 8
        let bottom = y + height - 24 - legendHeight
        let highest = niceCeiling(series.flatMap(\.values).max() ?? 0)
        func px(_ index: Int) -> Double {
            labels.count <= 1 ? (left + right) / 2 : left + (right - left) * Double(index) / Double(labels.count - 1)
        }
        func py(_ value: Double) -> Double { bottom - (bottom - top) * value / highest }
        var svg = "<text x=\"\(format(x + 8))\" y=\"\(format(y + 12))\" font-weight=\"bold\">\(escape(title))</text>\n"
        for tick in 0...4 {
            let value = highest * Double(tick) / 4
            svg += "<line x1=\"\(format(left))\" y1=\"\(format(py(value)))\" x2=\"\(format(right))\" y2=\"\(format(py(value)))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(format(left - 4))\" y=\"\(format(py(value) + 4))\" text-anchor=\"end\">\(DecimalText.format(value, places: value < 10 ? 1 : 0))</text>\n"
        }
        for (index, label) in labels.enumerated() {
            svg += "<text x=\"\(format(px(index)))\" y=\"\(format(bottom + 14))\" text-anchor=\"middle\">\(escape(label))</text>\n"
        }
        svg += "<text x=\"\(format((left + right) / 2))\" y=\"\(format(bottom + 26))\" text-anchor=\"middle\" fill=\"#555\">agents</text>\n"
        for (index, line) in series.enumerated() {
            let points = line.values.enumerated().map { "\(format(px($0.offset))),\(format(py($0.element)))" }.joined(separator: " ")
            let dash = line.dashed ? " stroke-dasharray=\"5,3\"" : ""
            svg += "<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash) points=\"\(points)\"/>\n"
            for (offset, value) in line.values.enumerated() {
                svg += "<circle cx=\"\(format(px(offset)))\" cy=\"\(format(py(value)))\" r=\"3\" fill=\"\(line.color)\"/>\n"
            }
            let legendY = bottom + 42 + Double(index) * 14
            svg += "<line x1=\"\(format(left))\" y1=\"\(format(legendY - 4))\" x2=\"\(format(left + 22))\" y2=\"\(format(legendY - 4))\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash)/>\n"
            svg += "<text x=\"\(format(left + 28))\" y=\"\(format(legendY))\">\(escape(line.name))</text>\n"
        }
        return svg
    }

    /// 1, 2 or 5 times a power of ten, at or above `value`: gridlines at round numbers.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        var power = 1.0
        while power * 10 < value { power *= 10 }
        while power > value { power /= 10 }
        for step in [1.0, 2, 5, 10] where step * power >= value { return step * power }
        return 10 * power
    }

    /// Text from the machine (a CPU model, a mount source) inside markdown: no table cell break,
    /// no HTML, no line break.
    static func markdownText(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "|": out += "\\|"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\n", "\r": out += " "
            default: out.append(character)
            }
        }
        return out
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    static func format(_ value: Double) -> String { DecimalText.format(value, places: 1) }
}
