import Glibc
import PimeshAgent
import PimeshCore
import PimeshStore
import PimeshSystem

/// What systemctl and supervisorctl users expect per agent (issue 15): stop, start and restart
/// one supervised agent, and reload `agents.d` without touching the agents whose manifests did
/// not change.
extension Supervisor {
    /// SIGTERM (after SIGCONT, in case it is frozen), then SIGKILL past the manifest's
    /// `stop_timeout_s`. The agent stays down, across lead restarts, until started.
    @_optimize(size)  // cold: an operator's command (the 25 MB budget)
    func stop(_ name: String, by caller: String) throws(ActionError) -> String {
        let agent = try supervised(name, verb: "stop")
        guard !agent.stopped else { return agent.pid.map { "already stopping (pid \($0))" } ?? "already stopped" }
        let now = Clock.monotonicNow()
        state.withLock { state in
            state.agents[name]?.stopped = true
            state.agents[name]?.restartAt = nil
            state.agents[name]?.restartRequested = false
            state.agents[name]?.awaiting = nil
            state.agents[name]?.awaitingReason = nil
            if agent.pid != nil { state.agents[name]?.killDeadline = now + (agent.manifest.stopTimeout ?? settings.stopTimeout) }
        }
        saveStoppedNames()
        registry.stopped(agent.id, at: now, reason: "stopped by \(caller)")
        doorbell.ring()
        guard let pid = agent.pid else {
            events.append(kind: "stopped", agent: name, detail: "by \(caller) (it was not running)", tier: .l2)
            return "stopped (it was not running)"
        }
        terminate(pid)
        let timeout = Int((agent.manifest.stopTimeout ?? settings.stopTimeout).milliseconds / 1000)
        events.append(kind: "stopped", agent: name, detail: "SIGTERM to pid \(pid) by \(caller); SIGKILL after \(timeout) s", tier: .l2)
        return "stopping pid \(pid) (SIGTERM, SIGKILL after \(timeout) s)"
    }

    /// Starts a stopped (or given-up) agent now, with a fresh backoff.
    func start(_ name: String, by caller: String) throws(ActionError) -> String {
        let agent = try supervised(name, verb: "start")
        if let pid = agent.pid, !agent.stopped { return "already running (pid \(pid))" }
        state.withLock { state in
            state.agents[name]?.stopped = false
            state.agents[name]?.awaiting = nil
            state.agents[name]?.awaitingReason = nil
            state.agents[name]?.backoff.reset()
            // Still shutting down from a stop: it starts again when that process is gone.
            if agent.pid == nil { state.agents[name]?.restartAt = Clock.monotonicNow() } else { state.agents[name]?.restartRequested = true }
        }
        saveStoppedNames()
        doorbell.ring()
        events.append(kind: "starting", agent: name, detail: "by \(caller)", tier: .l2)
        return agent.pid.map { "starting once pid \($0) has stopped" } ?? "starting"
    }

    /// A graceful restart (SIGTERM, SIGKILL past the stop timeout, then a start); a stopped
    /// agent is started. `heal` is the hard one (SIGKILL at once).
    func restart(_ name: String, by caller: String) throws(ActionError) -> String {
        let agent = try supervised(name, verb: "restart")
        guard let pid = agent.pid, !agent.stopped else { return try start(name, by: caller) }
        state.withLock { state in
            state.agents[name]?.restartRequested = true
            state.agents[name]?.awaiting = nil
            state.agents[name]?.awaitingReason = nil
            state.agents[name]?.backoff.reset()
            state.agents[name]?.killDeadline = Clock.monotonicNow() + (agent.manifest.stopTimeout ?? settings.stopTimeout)
        }
        doorbell.ring()
        terminate(pid)
        events.append(kind: "restarting", agent: name, detail: "SIGTERM to pid \(pid) by \(caller)", tier: .l2)
        return "restarting pid \(pid) (SIGTERM, then a start)"
    }

    /// Puts back the manifest the agent ran with before its last change (seed 003's rollback)
    /// and restarts it with that. The file in agents.d is not rewritten (it is the operator's);
    /// the rollback holds until the file is edited.
    func rollback(_ name: String, by caller: String) throws(ActionError) -> String {
        let agent = try supervised(name, verb: "roll back")
        let now = Clock.monotonicNow()
        let restored = try history.rollBack(agent.manifest, at: now)
        state.withLock { state in
            state.agents[name]?.manifest = restored
            state.agents[name]?.backoff = RestartBackoff(settings: restored.backoff)
            state.agents[name]?.awaiting = nil
            state.agents[name]?.awaitingReason = nil
        }
        registry.setMaxConcurrency(agent.id, restored.maxConcurrency)
        let pinned = history.isPinned(name) ? "; \(agent.manifest.file) still holds the change: edit it to end the rollback" : ""
        events.append(kind: "rollback", agent: name, detail: "to the manifest before its last change, by \(caller)\(pinned)", tier: .l1)
        if agent.stopped { return "rolled back (it stays stopped)" + pinned }
        if let pid = agent.pid {
            state.withLock { state in
                state.agents[name]?.restartRequested = true
                state.agents[name]?.killDeadline = now + (restored.stopTimeout ?? settings.stopTimeout)
            }
            terminate(pid)
        } else {
            state.withLock { $0.agents[name]?.restartAt = now }
        }
        doorbell.ring()
        return "rolled back; restarting with the earlier manifest" + pinned
    }

    private func supervised(_ name: String, verb: String) throws(ActionError) -> Managed {
        let agent = try managed(name)
        guard agent.manifest.mode == .supervised else {
            throw .unsupported("\"\(name)\" is attached: the lead does not run it; \(verb) it with its own runtime (podman \(verb) \(name))")
        }
        guard !agent.removed else { throw .unsupported("\"\(name)\" is being removed: its manifest is gone") }
        return agent
    }

    private func terminate(_ pid: pid_t) {
        kill(-pid, SIGCONT)
        kill(-pid, SIGTERM)
    }

    private func saveStoppedNames() {
        let names = state.withLock { Set($0.agents.values.filter { $0.stopped && !$0.removed }.map(\.manifest.name)) }
        do {
            try stoppedList.write(names)
        } catch {
            logger.warning("stopped agents not recorded: a lead restart would start them", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Reload

    /// What a reload did, agent by agent, for the operator and the journal.
    struct ReloadReport: Codable, Sendable, Equatable {
        var started: [String] = []
        var restarted: [String] = []
        var stopped: [String] = []
        /// Manifest changes that take effect without a restart (restart policy, heal command, …).
        var updated: [String] = []
        var unchanged = 0
        /// Refused files (file:line: reason); an agent whose manifest is refused keeps running as it was.
        var refused: [String] = []
    }

    /// Re-reads `agents.d`: new manifests start, removed ones stop, changed ones restart (when
    /// what they are started with changed) or are updated in place, and the rest are not
    /// touched. A refused manifest leaves its agent as it was.
    @_optimize(size)  // cold: once at start or on an operator's command (the 25 MB budget)
    func reload() throws -> ReloadReport {
        let current = state.withLock { $0.agents }
        let running = current.filter { !$0.value.removed }
        if let problem = TrustedFile.directoryProblem(settings.agentsDir), !problem.missing || !running.isEmpty {
            // Read as "no manifests", a directory moved away or opened to others would stop every agent.
            throw ActionError.failed(
                "\(problem.reason): nothing changed" + (problem.missing ? "; to stop every agent, remove the manifests, not the directory" : ""))
        }
        let (loaded, parseRefused) = AgentManifest.loadDirectory(settings.agentsDir, running: running.mapValues(\.manifest.file))
        guard let database = database.withLock({ $0 }) else { throw ActionError.failed("the lead is still starting") }
        let rows = Dictionary(try AgentStore(database: database).loadAgents().map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var refused = parseRefused
        var manifests: [AgentManifest] = []
        for manifest in loaded.map(history.inForce) {
            // An attached agent turned supervised too: it registered itself, its registrant holds its secret.
            if current[manifest.name]?.manifest.mode != .supervised, let refusal = selfRegisteredRefusal(manifest, row: rows[manifest.name], atStart: false) {
                refused.append(refusal)
                continue
            }
            manifests.append(manifest)
        }
        var report = ReloadReport()
        report.refused = refused.map(\.description)
        /// The agent a manifest names, or nil with the refusal reported (`admission(of:)`).
        func admitted(_ manifest: AgentManifest) -> Managed? {
            switch admission(of: manifest, row: rows[manifest.name], database: database) {
            case .success(let agent):
                return agent
            case .failure(let refusal):
                refused.append(refusal)
                report.refused.append(refusal.description)
                return nil
            }
        }
        let now = Clock.monotonicNow()
        var toStart: [String] = []
        var toTerminate: [(String, pid_t)] = []
        for manifest in manifests {
            if let old = current[manifest.name], !old.removed {
                guard old.manifest != manifest else {
                    report.unchanged += 1
                    continue
                }
                guard var updated = admitted(manifest) else { continue }
                var next = old
                next.manifest = updated.manifest
                next.backoff = old.manifest.backoff == manifest.backoff ? old.backoff : updated.backoff
                updated = next
                let relaunch = old.manifest.mode != manifest.mode || old.manifest.memoryLimitBytes != manifest.memoryLimitBytes
                    || old.launch.map { $0 != launchDigest(of: updated) } ?? (launchDigest(of: old) != launchDigest(of: updated))
                state.withLock { $0.agents[manifest.name] = updated }
                history.observe(manifest, at: now)
                if relaunch, manifest.mode == .supervised, let pid = old.pid, !old.stopped {
                    state.withLock { state in
                        state.agents[manifest.name]?.restartRequested = true
                        state.agents[manifest.name]?.killDeadline = now + (manifest.stopTimeout ?? settings.stopTimeout)
                    }
                    toTerminate.append((manifest.name, pid))
                    report.restarted.append(manifest.name)
                } else {
                    report.updated.append(manifest.name)
                }
            } else {
                guard current[manifest.name]?.removed != true else {
                    // Removed by an earlier reload and still shutting down: it comes back once gone.
                    state.withLock { state in
                        state.agents[manifest.name]?.removed = false
                        state.agents[manifest.name]?.manifest = manifest
                        state.agents[manifest.name]?.restartRequested = true
                    }
                    if let id = current[manifest.name]?.id { registry.setMaxConcurrency(id, manifest.maxConcurrency) }
                    report.started.append(manifest.name)
                    continue
                }
                guard let agent = admitted(manifest) else { continue }
                state.withLock { $0.agents[manifest.name] = agent }
                history.observe(manifest, at: now)
                if manifest.mode == .supervised {
                    toStart.append(manifest.name)
                    report.started.append(manifest.name)
                }
            }
        }
        let named = Set(manifests.map(\.name))
        // After the loop: a file refused there (renaming its agent past the limit) keeps its agent too.
        let refusedFiles = Set(refused.map(\.file))
        for (name, agent) in current where !named.contains(name) && !agent.removed && !refusedFiles.contains(agent.manifest.file) {
            report.stopped.append(name)
            if agent.manifest.mode == .supervised, let pid = agent.pid {
                state.withLock { state in
                    state.agents[name]?.removed = true
                    state.agents[name]?.restartAt = nil
                    state.agents[name]?.restartRequested = false
                    state.agents[name]?.killDeadline = now + (agent.manifest.stopTimeout ?? settings.stopTimeout)
                }
                registry.stopped(agent.id, at: now, reason: "its manifest \(agent.manifest.file) was removed")
                toTerminate.append((name, pid))
            } else {
                state.withLock { $0.agents[name] = nil }
                if agent.manifest.mode == .supervised {
                    registry.stopped(agent.id, at: now, reason: "its manifest \(agent.manifest.file) was removed")
                }
            }
        }
        let previouslyRefused = state.withLock { state in
            defer { state.refused = refused }
            return state.refused
        }
        saveStoppedNames()
        for (_, pid) in toTerminate { terminate(pid) }
        state.withLock { state in
            for name in toStart where state.agents[name]?.stopped == false { state.agents[name]?.restartAt = now }
        }
        doorbell.ring()
        report.started.sort()
        report.restarted.sort()
        report.stopped.sort()
        report.updated.sort()
        // Once per refusal: each reload of an unchanged agents.d wrote every refused file again
        // (182,091 audit rows from 2,000 refused files and 91 reloads).
        let alreadyRefused = Set(previouslyRefused.map(\.description))
        for error in refused where !alreadyRefused.contains(error.description) {
            events.append(kind: "manifest_refused", agent: nil, detail: "\(error)")
        }
        events.append(
            kind: "reloaded", agent: nil,
            detail: "started [\(report.started.joined(separator: ", "))], restarted [\(report.restarted.joined(separator: ", "))], "
                + "stopped [\(report.stopped.joined(separator: ", "))], updated [\(report.updated.joined(separator: ", "))], "
                + "\(report.unchanged) unchanged, \(report.refused.count) refused", tier: .l2)
        return report
    }
}
