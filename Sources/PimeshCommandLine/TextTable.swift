import PimeshCore

/// Left-aligned text columns, numbers right-aligned, for the human output of the CLI.
public struct TextTable {
    var header: [String]
    var rows: [[String]] = []
    var rightAligned: Set<Int> = []

    public init(_ header: [String], rightAligned: Set<Int> = []) {
        self.header = header
        self.rightAligned = rightAligned
    }

    /// Cells come from agents too (a task's result, an answer, an event's detail): printed as
    /// they are, a carriage return or an escape sequence could forge a row or drive the terminal.
    public mutating func add(_ row: [String]) {
        rows.append(row.map { PrintableText.of($0, limit: .max) })
    }

    public func render() -> String {
        let all = [header] + rows
        var widths = Array(repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count {
                widths[i] = max(widths[i], cell.count)
            }
        }
        return all.map { row in
            row.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n")
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}

public enum Format {
    public static func megabytes(_ bytes: UInt64) -> String {
        DecimalText.format(Double(bytes) / 1_048_576, places: 1) + " MiB"
    }
}
