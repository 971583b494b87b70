/// A task's life: QUEUED (accepted, no agent yet) → ASSIGNED (in an agent's inbox) → RUNNING
/// (pulled by it) → one terminal state. SKIPPED tasks were never sent anywhere.
public enum TaskState: String, CaseIterable, Sendable, Codable {
    case queued
    case assigned
    case running
    case succeeded
    case failed
    case conflict
    case cancelled
    case skipped

    public var isTerminal: Bool {
        switch self {
        case .queued, .assigned, .running: false
        case .succeeded, .failed, .conflict, .cancelled, .skipped: true
        }
    }
}
