import ArgumentParser
import PimeshAgent
import PimeshCommandLine
import PimeshCore
import PimeshSystem

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the lead: agents by trinary state, scores, node impedance, heartbeats, memory.",
        discussion: """
            --json prints the lead's status document; scripts may rely on agents.total, \
            agents.ready, agents.transit, agents.conflict, node.score, heartbeats.accepted, \
            heartbeats.dropped (reason → count), rss_bytes and pss_bytes.
            """
    )

    @OptionGroup var options: ClientOptions

    @Flag(name: .long, help: "Refresh every second until interrupted (or until --until-ready is met).")
    var watch = false

    @Option(name: .long, help: "Wait until at least this many agents are READY, then exit 0.")
    var untilReady: Int?

    @Option(name: .long, help: "With --until-ready: give up after this many seconds and exit 1.")
    var timeout: Double = 60

    func validate() throws {
        if let untilReady, untilReady < 0 { throw ValidationError("--until-ready must be 0 or more") }
        if timeout <= 0 { throw ValidationError("--timeout must be above 0 seconds") }
    }

    func run() async throws {
        do {
            let start = Clock.monotonicNow()
            while true {
                let raw: [UInt8]
                do {
                    raw = try options.client().get("/v1/status")
                } catch where untilReady != nil && (Clock.monotonicNow() - start).milliseconds / 1000 <= timeout {
                    // Waiting for a lead that is still starting is what --until-ready is for.
                    try await Task.sleep(for: .milliseconds(200))
                    continue
                }
                let report = try APICoding.decode(StatusReport.self, from: raw)
                let reached = untilReady.map { report.agents.ready >= $0 } ?? false
                if options.json {
                    if !watch || reached || untilReady == nil { print(String(decoding: raw, as: UTF8.self)) }
                } else {
                    if watch && Terminal.isInteractive { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                    print(Self.render(report))
                    if watch || untilReady != nil { print("") }
                }
                if reached { return }
                if let untilReady {
                    if (Clock.monotonicNow() - start).milliseconds / 1000 > timeout {
                        throw CLIFailure("only \(report.agents.ready) of \(untilReady) agents READY after \(DecimalText.format(timeout)) s")
                    }
                } else if !watch {
                    return
                }
                fflushStdout()  // for a pipe, as `pimesh events --follow` does
                try await Task.sleep(for: .seconds(1))
            }
        } catch let error as CancellationError {
            throw error
        } catch {
            throw CLIFailure.report(error)
        }
    }

    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    static func render(_ report: StatusReport) -> String {
        let a = report.agents
        let n = report.node
        let h = report.heartbeats
        var lines: [String] = []
        lines.append("pimesh lead \(report.version)   pid \(report.pid)   up \(DecimalText.format(report.uptimeS)) s")
        lines.append(
            "agents      \(a.total) total   \(a.ready) READY   \(a.transit) TRANSIT   \(a.conflict) CONFLICT   "
                + "(\(DecimalText.format(a.readyRatio * 100)) % ready)")
        let mean = a.meanScore.map { DecimalText.format($0) } ?? "–"
        let p95 = a.p95Score.map(String.init) ?? "–"
        lines.append("scores      mean \(mean)   p95 \(p95)   degraded (>800) \(a.degraded)   unstable (drift>0.5) \(a.unstable)")
        let r = n.readings
        let load = r.loadAverage.map { DecimalText.format($0, places: 2) } ?? "–"
        let temperature = r.temperatureCelsius.map { DecimalText.format($0) + " °C" } ?? "–"
        lines.append(
            "node        score \(n.score)   cpu \(DecimalText.format(n.factors.cpu, places: 2))   memory \(DecimalText.format(n.factors.memory, places: 2))   "
                + "io \(DecimalText.format(n.factors.io, places: 2))   thermal \(DecimalText.format(n.factors.thermal, places: 2))   "
                + "headroom \(DecimalText.format(n.factors.headroom, places: 2))   tasks \(DecimalText.format(n.factors.tasks, places: 2))   "
                + "storage \(DecimalText.format(n.factors.storage, places: 2))   power \(DecimalText.format(n.factors.power, places: 2))   "
                + "load \(load) on \(r.cpuCount) cpus   temperature \(temperature)")
        if r.underVoltage == true || r.throttled == true || r.frequencyCapped == true || r.underVoltageSinceBoot == true {
            let now = [r.underVoltage == true ? "UNDER-VOLTAGE" : nil, r.throttled == true ? "throttled" : nil, r.frequencyCapped == true ? "clock capped" : nil]
                .compactMap { $0 }
            lines.append(
                "power       " + (now.isEmpty ? "ok now" : now.joined(separator: ", "))
                    + (r.underVoltageSinceBoot == true ? "   under-voltage seen since boot: check the supply and the SD card" : ""))
        }
        if let writes = n.writes {
            let budget = writes.budgetBytesPerDay == 0 ? "no budget" : "of \(Format.megabytes(writes.budgetBytesPerDay))/day"
            lines.append(
                "sd writes   \(Format.megabytes(writes.lastDayBytes)) in the last day \(budget)   pace \(Format.megabytes(writes.projectedPerDayBytes))/day"
                    + (writes.checkpointStretch > 1 ? "   checkpoints every \(DecimalText.format(writes.checkpointStretch))× longer" : "")
                    + (r.storageCommitP99Ms.map { "   commit p99 " + DecimalText.format($0, places: 2) + " ms" } ?? ""))
        }
        // The decoder turns snake_case keys into camelCase, dictionary keys included.
        let dropped = HeartbeatDropReason.allCases.map { reason -> String in
            let key = reason.description
            let count = h.dropped[key] ?? h.dropped[Self.camelCase(key)] ?? 0
            return "\(key) \(count)"
        }.joined(separator: ", ")
        lines.append("heartbeats  \(h.accepted) accepted   \(h.droppedTotal) dropped (\(dropped))   every \(h.intervalMs) ms")
        lines.append(
            "memory      rss \(Format.megabytes(report.rssBytes))   pss \(Format.megabytes(report.pssBytes))   "
                + "private anonymous \(Format.megabytes(report.privateAnonymousBytes))")
        let t = report.tasks
        lines.append(
            "tasks       \(t.submitted) submitted   \(t.queued + t.assigned + t.running) open (\(t.queued) queued, \(t.assigned) assigned, "
                + "\(t.running) running)   \(t.succeeded) succeeded   \(t.failed) failed   \(t.conflict) conflict   "
                + "\(t.cancelled) cancelled   \(t.skipped) skipped   \(t.requeued) requeued")
        if let health = report.health {
            let conditions = health.conditions.filter { $0.key != "alive" && $0.value > 0 }.sorted { $0.key < $1.key }
                .map { "\($0.value) \($0.key)" }
            lines.append(
                "health      level \(health.level)   \(health.conditions["alive"] ?? 0) alive"
                    + (conditions.isEmpty ? "" : "   " + conditions.joined(separator: "   "))
                    + "   supervised \(health.supervised)   attached \(health.attached)   restarts \(health.restarts)")
            if !health.restrictions.isEmpty { lines.append("degraded    " + health.restrictions.joined(separator: "; ")) }
            if let used = health.agentsMemoryBytes, health.supervised > 0 {
                let budget = health.ramBudgetBytes.map { " of \(Format.megabytes($0)) budget" } ?? " (no budget)"
                lines.append("agents ram  \(Format.megabytes(used))\(budget)   cgroups \(health.cgroups)")
            }
            if !health.openGroupBreakers.isEmpty { lines.append("breakers    open: \(health.openGroupBreakers.joined(separator: ", "))") }
            let stepped = health.tiers.filter { $0.steps > 0 }
            if !stepped.isEmpty {
                lines.append(
                    "tiers       " + stepped.map { tier in
                        "\(tier.tier) \(tier.withinSla)/\(tier.steps) within \(tier.slaMs) ms"
                            + (tier.p95Ms.map { " (p95 " + DecimalText.format($0) + " ms)" } ?? "")
                    }.joined(separator: "   "))
            }
            for item in health.awaitingOperator { lines.append("awaiting    \(item)   (pimesh heal NAME)") }
            for refused in health.refusedManifests { lines.append("refused     \(refused)") }
            for warning in health.warnings { lines.append("warning     \(warning)") }
        }
        if let incidents = report.incidents {
            if incidents.open == 0 {
                lines.append("incidents   none open")
            } else {
                lines.append("incidents   \(incidents.open) open, highest \(incidents.highestSeverity.map { "\($0)" } ?? "-")   (pimesh incidents)")
                for brief in incidents.incidents.prefix(5) {
                    let marks = (brief.acknowledged ? "" : ", not acknowledged") + (brief.breaches.isEmpty ? "" : ", missed: " + brief.breaches.joined(separator: ","))
                    lines.append("            \(brief.name) \(brief.severity) \(brief.state.rawValue)\(marks): \(brief.title)")
                }
            }
        }
        if let audit = report.audit {
            let prunedThrough = "pruned through \(audit.prunedThroughSeq.map(String.init) ?? "nothing yet")"
            let pruning =
                if audit.prunedByAgeAlone == true { prunedThrough + " (no upstream: by age alone)" }
                else if let upstream = audit.upstreamSeq { prunedThrough + ", upstream holds through \(upstream)" }
                else { "not pruning: no snapshot reached upstream yet" }
            lines.append(
                "audit       \(audit.rows) rows through \(audit.lastSeq)   \(Format.megabytes(UInt64(max(0, audit.bytesAtLastCheck)))) at last check   \(pruning)")
        }
        if !a.quarantined.isEmpty {
            lines.append("quarantine  \(a.quarantined.joined(separator: ", "))   (pimesh conflicts release NAME)")
        }
        for kpi in report.kpis {
            let value: String
            if let measured = kpi.value {
                value = kpi.unit == "ms" ? DecimalText.format(measured) + " ms" : DecimalText.format(measured * 100) + " %"
            } else {
                value = "–"
            }
            let target = kpi.unit == "ms" ? DecimalText.format(kpi.target) + " ms" : DecimalText.format(kpi.target * 100) + " %"
            let verdict = kpi.met.map { $0 ? "met" : "MISSED" } ?? "no data"
            lines.append(
                "kpi         " + kpi.name.padding(30) + value.padding(10) + "target \(kpi.bound) \(target)".padding(18)
                    + "\(verdict) (last \(kpi.window), \(kpi.samples) \(kpi.name == "mesh_availability" ? "s watched" : "samples"))")
        }
        let commit = report.store.lastCommitMs.map { " (last \(DecimalText.format($0, places: 2)) ms)" } ?? ""
        let free = report.store.freeBytes.map { "   \(Format.megabytes($0)) free" } ?? ""
        lines.append("store       \(report.store.commits) commits\(commit)   \(report.store.checkpoints) checkpoints   at \(report.store.path)\(free)")
        if let failing = report.store.failing {
            let span = report.store.failingForS.map { " for \(DecimalText.format($0, places: 1)) s" } ?? ""
            let waiting = report.store.waitingWrites.map { ", \($0) writes waiting" } ?? ""
            lines.append("            COMMITS FAILING\(span) (\(report.store.failedBatches ?? 0) batches\(waiting)): \(failing)")
        }
        return lines.joined(separator: "\n")
    }

    static func camelCase(_ snake: String) -> String {
        let parts = snake.split(separator: "_")
        return (parts.first.map(String.init) ?? "") + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
