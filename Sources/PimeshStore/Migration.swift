/// A numbered step of the schema; applied once, in order, inside a transaction.
public struct Migration: Sendable {
    public var version: Int
    public var statements: [String]

    public init(version: Int, statements: [String]) {
        self.version = version
        self.statements = statements
    }
}
