import PimeshAgent
import PimeshSystem

/// Finds the lead's data dir in the order the unit runs it, so that `sudo pimesh status` on a
/// Pi finds the lead of /etc/pimesh/pimesh.json without flags (sudo drops $PIMESH_DATA_DIR):
/// `--data-dir`, then `$PIMESH_DATA_DIR`, then the data_dir of `--config` or of
/// /etc/pimesh/pimesh.json when it exists, then `./.pimesh`. The first two are taken as given;
/// of the others the first that holds a lead.json wins.
public enum DataDirLocator {
    public static let systemConfig = "/etc/pimesh/pimesh.json"
    static let fallback = "./.pimesh"

    public struct Candidate: Equatable, Sendable {
        public var dataDir: String
        public var source: String
    }

    public struct NotFound: Error, CustomStringConvertible {
        public var description: String
    }

    public static func candidates(
        dataDir: String?, config: String?, environment: [String: String], systemConfig: String = systemConfig
    ) throws -> [Candidate] {
        if let dataDir { return [Candidate(dataDir: dataDir, source: "--data-dir")] }
        if let dir = environment["PIMESH_DATA_DIR"], !dir.isEmpty { return [Candidate(dataDir: dir, source: "$PIMESH_DATA_DIR")] }
        var candidates: [Candidate] = []
        if let file = configFile(explicit: config, systemConfig: systemConfig) {
            var unset = LeadConfig()
            unset.dataDir = ""
            let settings: LeadConfig
            settings = try ConfigLoader.load(path: file, base: unset)
            if !settings.dataDir.isEmpty { candidates.append(Candidate(dataDir: settings.dataDir, source: "data_dir of \(file)")) }
            if config != nil { return candidates.isEmpty ? [Candidate(dataDir: fallback, source: "\(file) names no data_dir")] : candidates }
        }
        candidates.append(Candidate(dataDir: fallback, source: "the default"))
        return candidates
    }

    /// `--config`, else the packaged config when this machine has one.
    public static func configFile(explicit: String?, systemConfig: String = systemConfig) -> String? {
        explicit ?? (FileIO.exists(systemConfig) ? systemConfig : nil)
    }

    public static func locate(
        dataDir: String?, config: String?, environment: [String: String], systemConfig: String = systemConfig
    ) throws -> String {
        let candidates = try candidates(dataDir: dataDir, config: config, environment: environment, systemConfig: systemConfig)
        if candidates.count == 1 { return candidates[0].dataDir }
        if let found = candidates.first(where: { FileIO.exists($0.dataDir + "/" + LeadEndpoint.fileName) }) { return found.dataDir }
        let places = candidates.map { "\($0.dataDir) (\($0.source))" }.joined(separator: ", ")
        throw NotFound(description:
            "no lead found: looked for \(LeadEndpoint.fileName) in \(places); is the lead running (`systemctl status pimesh`)? "
                + "Else pass the --data-dir or --config that `pimesh run` was given")
    }
}

