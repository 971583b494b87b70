/// A failure of the database, with SQLite's own message and the statement that failed.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public var code: Int32
    public var message: String
    public var context: String

    public init(code: Int32, message: String, context: String) {
        self.code = code
        self.message = message
        self.context = context
    }

    public var description: String {
        "sqlite error \(code) (\(message)) during \(context)"
    }
}
