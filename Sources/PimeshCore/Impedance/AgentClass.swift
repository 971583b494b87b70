/// Impedance classes from seed 001 §2.2. A Pi and its local agents are `local` (CLASS_E_LOCAL).
public enum AgentClass: String, CaseIterable, Codable, Sendable {
    case edge = "CLASS_A_EDGE"
    case serverless = "CLASS_B_SERVERLESS"
    case persistent = "CLASS_C_PERSISTENT"
    case gpu = "CLASS_D_GPU"
    case local = "CLASS_E_LOCAL"
    case human = "CLASS_F_HUMAN"

    /// `base_times` of seed 001 §3.1 `estimate_processing_time`, in milliseconds.
    public var baseProcessingMs: Double {
        switch self {
        case .edge: 10
        case .serverless: 50
        case .persistent: 200
        case .gpu: 100  // fast in parallel but with setup overhead (seed 001)
        case .local: 150
        case .human: 60_000  // one minute minimum for a human
        }
    }

    /// The deepest queue the lead believes an agent reports. Heartbeats carry 32 bits, and
    /// 2³² items on a human agent make a lead time of 800 years: past it, an agent is simply
    /// "very busy" (65,535 items × 10 % = a factor of 6,554, a human agent's answer in 45 days).
    public static let maxQueueDepth = 65_535

    public static func admittedQueueDepth(_ reported: Int) -> Int {
        min(max(0, reported), maxQueueDepth)
    }

    /// Seed 001 §3.1: `base × (1 + 0.5·weight) × (1 + 0.1·queue)`.
    /// Heavier payloads take longer; each queued item adds 10 %.
    public func estimateProcessingMs(payloadWeight: Double, queueDepth: Int) -> Double {
        let weightFactor = 1 + (payloadWeight.isFinite ? max(0, payloadWeight) : 0) * 0.5
        let queueFactor = 1 + Double(Self.admittedQueueDepth(queueDepth)) * 0.1
        return baseProcessingMs * weightFactor * queueFactor
    }

    /// Accepts the seed's names and the short letters `A`…`F` an operator may type.
    public init?(name: String) {
        if let exact = AgentClass(rawValue: name) {
            self = exact
            return
        }
        switch name.uppercased() {
        case "A", "EDGE": self = .edge
        case "B", "SERVERLESS": self = .serverless
        case "C", "PERSISTENT": self = .persistent
        case "D", "GPU": self = .gpu
        case "E", "LOCAL": self = .local
        case "F", "HUMAN": self = .human
        default: return nil
        }
    }
}
