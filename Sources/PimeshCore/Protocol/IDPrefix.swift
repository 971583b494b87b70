/// Ids as people type them: any unique prefix of 4 or more characters, as git and docker take
/// them, because tables print the first 8 and nobody types 36.
public enum IDPrefix {
    public static let minimumLength = 4
    /// How many candidates an ambiguous prefix names.
    public static let shownCandidates = 5

    public enum Resolution: Equatable, Sendable {
        case unique(String)
        case ambiguous([String])
        case none
    }

    /// `text` in lower case against `ids`: a whole id wins; a shorter prefix must match one.
    public static func resolve(_ text: String, among ids: some Sequence<String>) -> Resolution {
        let wanted = text.lowercased()
        guard wanted.count >= minimumLength else { return .none }
        var matches: [String] = []
        for id in ids where id.hasPrefix(wanted) {
            if id == wanted { return .unique(id) }
            if !matches.contains(id) { matches.append(id) }
        }
        switch matches.count {
        case 0: return .none
        case 1: return .unique(matches[0])
        default: return .ambiguous(Array(matches.sorted().prefix(shownCandidates)))
        }
    }
}
