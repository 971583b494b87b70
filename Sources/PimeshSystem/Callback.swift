/// A function to be kept in a `Mutex` (or any generic container read through `inout`).
///
/// Stored bare (a function, an optional one, or a tuple holding one), a function in a generic
/// container is held in its most general form, and every `withLock { $0 }` that reads it
/// writes it back through the `inout` wrapped in two more reabstraction thunks: after n reads,
/// a call runs through 2n thunks, longer each time, until the thread's stack overflows. A
/// lead's task-outcome sink was 4,000+ thunks deep after a few thousand tasks, slower with every
/// task, and the lead died after about 85,000. Inside a struct the function keeps one form
/// however often it is read.
public struct Callback<Function: Sendable>: Sendable {
    public let call: Function

    public init(_ call: Function) {
        self.call = call
    }
}
