/// Settings held by reference. Each agent's health and impedance state carries the settings it
/// was made with; held by value that is several hundred bytes an agent, all equal. The registry
/// copies each agent's state from one prototype, so that with this box 1,000 agents share one
/// copy (issue 14: per-agent memory).
public final class Shared<Value: Sendable>: Sendable {
    public let value: Value

    public init(_ value: Value) {
        self.value = value
    }
}

extension Shared: Equatable where Value: Equatable {
    public static func == (lhs: Shared, rhs: Shared) -> Bool {
        lhs === rhs || lhs.value == rhs.value
    }
}
