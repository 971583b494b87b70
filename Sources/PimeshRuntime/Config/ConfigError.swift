/// A config problem, naming the file, the key (as a dotted path), its line (and column, for a syntax error) and why.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var line: Int?
    /// Only for a syntax error, where the place within the line matters.
    public var column: Int? = nil
    public var reason: String

    /// `file:line:column: …`, the form editors and compilers use, so a terminal can jump there.
    public var description: String {
        let place = [file, line.map(String.init), line == nil ? nil : column.map(String.init)].compactMap { $0 }.joined(separator: ":")
        return key.isEmpty ? "\(place): \(reason)" : "\(place): key \"\(key)\": \(reason)"
    }
}
