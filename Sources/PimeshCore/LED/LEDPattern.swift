/// A repeating on/off timeline for one LED: `spans` are the lit parts of each `period`.
public struct LEDPattern: Sendable, Equatable, CustomStringConvertible {
    public struct Span: Sendable, Equatable {
        public var start: Duration
        public var length: Duration

        public init(start: Duration, length: Duration) {
            self.start = start
            self.length = length
        }
    }

    public var period: Duration
    public var spans: [Span]

    public init(period: Duration, spans: [Span]) {
        self.period = period
        self.spans = spans
    }

    public static let off = LEDPattern(period: .seconds(1), spans: [])
    public static let steady = LEDPattern(period: .seconds(1), spans: [Span(start: .zero, length: .seconds(1))])

    /// On for `on`, then off for `off`, repeated.
    public static func blink(on: Duration, off: Duration) -> LEDPattern {
        LEDPattern(period: on + off, spans: [Span(start: .zero, length: on)])
    }

    /// `count` short blinks, then a long pause: a blink code.
    public static func code(_ count: Int, on: Duration, gap: Duration, pause: Duration) -> LEDPattern {
        let spans = (0..<max(1, count)).map { Span(start: (on + gap) * $0, length: on) }
        return LEDPattern(period: (on + gap) * max(1, count) + pause, spans: spans)
    }

    private func phase(_ elapsed: Duration) -> Int64 {
        let periodNs = period.wholeNanoseconds
        let ns = elapsed.wholeNanoseconds % periodNs
        return ns < 0 ? ns + periodNs : ns
    }

    public func isOn(at elapsed: Duration) -> Bool {
        let ns = phase(elapsed)
        return spans.contains { ns >= $0.start.wholeNanoseconds && ns < ($0.start + $0.length).wholeNanoseconds }
    }

    /// The first instant after `elapsed` at which the LED changes; nil for a constant pattern.
    public func nextChange(after elapsed: Duration) -> Duration? {
        var edges: [Int64] = []
        for span in spans {
            edges.append(span.start.wholeNanoseconds)
            edges.append((span.start + span.length).wholeNanoseconds)
        }
        let periodNs = period.wholeNanoseconds
        // Edges that coincide with the period's wrap are not changes when the pattern is steady.
        let changes = Set(edges.map { $0 % periodNs }).sorted().filter { edge in
            isOn(at: .nanoseconds(edge)) != isOn(at: .nanoseconds(edge - 1 + (edge == 0 ? periodNs : 0)))
        }
        guard !changes.isEmpty else { return nil }
        let ns = phase(elapsed)
        let base = elapsed.wholeNanoseconds - ns
        if let next = changes.first(where: { $0 > ns }) { return .nanoseconds(base + next) }
        return .nanoseconds(base + periodNs + changes[0])
    }

    /// Every change from `start` up to `end`, with the state at `start` first.
    public func transitions(from start: Duration = .zero, to end: Duration) -> [(at: Duration, on: Bool)] {
        var result: [(at: Duration, on: Bool)] = [(start, isOn(at: start))]
        var cursor = start
        while let next = nextChange(after: cursor), next < end {
            result.append((next, isOn(at: next)))
            cursor = next
        }
        return result
    }

    public var description: String {
        if spans.isEmpty { return "off" }
        if spans.count == 1 && spans[0].start == .zero && spans[0].length == period { return "steady on" }
        let lit = spans.map { "\(Self.ms($0.length)) on at \(Self.ms($0.start))" }.joined(separator: ", ")
        return "\(lit), every \(Self.ms(period))"
    }

    static func ms(_ duration: Duration) -> String {
        "\(Int(duration.milliseconds.rounded())) ms"
    }
}
