import PimeshAgent
import PimeshSystem

/// The names of the agents an operator stopped, in `<data dir>/agents-stopped.json` (0600):
/// `pimesh agent stop` outlives a lead restart, as a stopped program does under supervisord
/// with autostart off, until `pimesh agent start`.
struct StoppedAgents: Sendable {
    let path: String

    init(dataDir: String) {
        path = dataDir + "/agents-stopped.json"
    }

    /// Unreadable or corrupt: nothing is stopped (starting an agent is the safe default for a
    /// node that exists to run them), and the caller says so.
    func read() -> (names: Set<String>, problem: String?) {
        guard FileIO.exists(path) else { return ([], nil) }
        do {
            return (Set(try APICoding.decode([String].self, from: FileIO.read(path: path, limit: 1 << 20))), nil)
        } catch {
            return ([], "\(path): \(error)")
        }
    }

    func write(_ names: Set<String>) throws {
        try FileIO.writeAtomically(path: path, bytes: try APICoding.encode(names.sorted()), mode: 0o600)
    }
}
