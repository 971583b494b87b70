/// The release of pimesh that this binary is: `--version` of both executables, `lead.json`,
/// the audit log's start records and the .deb's version (scripts/build-deb.sh reads it here).
public enum PimeshVersion {
    public static let current = "0.1.0"
}
