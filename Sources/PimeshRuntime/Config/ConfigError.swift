/// A config problem, naming the file, the key (as a dotted path), its line and why.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var line: Int?
    public var reason: String

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(place): \(reason)" : "\(place): key \"\(key)\": \(reason)"
    }
}
