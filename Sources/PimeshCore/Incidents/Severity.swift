/// Seed 004's severities. Seed 003's P1 and seed 002's `emergency` are SEV1; seed 002's
/// `early_warning` is SEV4 (docs/incidents.md).
public enum Severity: Int, CaseIterable, Codable, Sendable, Comparable, CustomStringConvertible {
    case sev1 = 1
    case sev2 = 2
    case sev3 = 3
    case sev4 = 4

    /// SEV1 is the most severe: `a > b` means a is worse.
    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rawValue > rhs.rawValue }

    public var description: String { "SEV\(rawValue)" }

    public init?(name: String) {
        guard let value = Self.allCases.first(where: { $0.description == name.uppercased() }) else { return nil }
        self = value
    }

    /// As people write it, `"SEV2"`, in JSON too.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Severity(name: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(text) is not SEV1…SEV4"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Where an incident is: open until its causes stop firing (mitigated), resolved once they
/// stayed quiet for the observation window, or by an operator.
public enum IncidentState: String, Codable, Sendable {
    case open
    case mitigated
    case resolved
}

/// Seed 003's error-pattern map, applied to the error texts agents report.
public enum ErrorPattern: String, Codable, Sendable, CaseIterable {
    case timeout
    case rateLimit = "rate_limit"
    case validation
    case connectionRefused = "connection_refused"
    case authentication
    case other

    public static func classify(_ text: String) -> ErrorPattern {
        let lower = text.lowercased()
        if lower.contains("timeout") || lower.contains("timed out") || lower.contains("deadline exceeded") { return .timeout }
        if lower.contains("rate limit") || lower.contains("rate-limit") || lower.contains("too many requests") || lower.contains("429") {
            return .rateLimit
        }
        if lower.contains("validation") || lower.contains("invalid") || lower.contains("schema") { return .validation }
        if lower.contains("connection refused") || lower.contains("econnrefused") { return .connectionRefused }
        if lower.contains("auth") || lower.contains("unauthorized") || lower.contains("forbidden") || lower.contains("401")
            || lower.contains("403")
        {
            return .authentication
        }
        return .other
    }

    /// What seed 003 says the pattern usually means.
    public var likelyMeaning: String {
        switch self {
        case .timeout: "latency or an outage of what the agents call"
        case .rateLimit: "quota exhaustion"
        case .validation: "a schema or breaking change"
        case .connectionRefused: "a database or infrastructure problem"
        case .authentication: "a credential problem"
        case .other: "no known pattern"
        }
    }
}
