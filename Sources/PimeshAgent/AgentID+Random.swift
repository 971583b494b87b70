import PimeshCore

extension AgentID {
    /// A random version-4 UUID from the system's generator, which the core never reads itself.
    public static func random() -> AgentID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }
}
