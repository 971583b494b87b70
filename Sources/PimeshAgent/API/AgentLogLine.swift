import PimeshCore

/// One line of a supervised agent's log file (`<run_dir>/logs/NAME.log`):
/// `2026-12-02T03:14:58.123Z out text` — the time the lead read it (UTC, ms), the stream, the
/// text. `out` is the agent's stdout and stderr, which share one pipe (as supervisord's
/// redirect_stderr); `lead` is what the lead wrote (a start, an adoption, dropped bytes).
/// Fixed-width times sort as text, so `--since` compares strings.
public struct AgentLogLine: Codable, Sendable, Equatable {
    public enum Stream: String, Codable, Sendable {
        case out
        case lead
        /// The lead's health events for the agent, merged in by `pimesh logs`.
        case event
    }

    public var timeMs: Int64
    public var stream: Stream
    public var text: String

    public init(timeMs: Int64, stream: Stream, text: String) {
        self.timeMs = timeMs
        self.stream = stream
        self.text = text
    }

    public static func stamp(epochMs: Int64, stream: Stream) -> String {
        UTCTime.iso8601(epochMs: epochMs, milliseconds: true) + " " + stream.rawValue + " "
    }

    /// A line as the file holds it; nil for one without a stamp (a log written before stamps,
    /// or a line cut by the start of a tail).
    public static func parse(_ line: Substring) -> AgentLogLine? {
        let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let timeMs = UTCTime.epochMs(iso8601: parts[0]), let stream = Stream(rawValue: String(parts[1])) else {
            return nil
        }
        return AgentLogLine(timeMs: timeMs, stream: stream, text: parts.count > 2 ? String(parts[2]) : "")
    }

    /// For a terminal: the agent's text with its control characters but tabs escaped (`PrintableText`),
    /// so that a carriage return cannot dress a line up as the lead's event, nor an escape
    /// sequence clear or retitle the screen (`--json` has JSON's own escapes).
    public var rendered: String {
        Self.stamp(epochMs: timeMs, stream: stream) + PrintableText.of(text, limit: .max, keepingTabs: true)
    }
}
