import PimeshCore

/// Pictures of the patterns for docs/leds.md, drawn from the patterns themselves so the docs
/// cannot drift from what the LEDs do (`pimesh leds svg`).
public enum LEDTimelineSVG {
    /// One row per pattern: lit spans over `span` (default 6 s), with a tick every second.
    @_optimize(size)  // cold: docs and `pimesh led`, never the lead (the 25 MB budget)
    public static func render(title: String, rows: [(label: String, pattern: LEDPattern, color: String)], span: Duration = .seconds(6))
        -> String
    {
        let labelWidth = 210.0
        let plotWidth = 600.0
        let rowHeight = 26.0
        let top = 30.0
        let height = top + rowHeight * Double(rows.count) + 24
        let width = labelWidth + plotWidth + 20
        let scale = plotWidth / span.milliseconds
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="monospace" font-size="12">
            <rect width="100%" height="100%" fill="#ffffff"/>
            <text x="8" y="18" font-weight="bold">\(escape(title))</text>

            """
        for (index, row) in rows.enumerated() {
            let y = top + rowHeight * Double(index)
            svg += "<text x=\"8\" y=\"\(format(y + 16))\">\(escape(row.label))</text>\n"
            svg += "<rect x=\"\(format(labelWidth))\" y=\"\(format(y + 4))\" width=\"\(format(plotWidth))\" height=\"16\" fill=\"#e8e8e8\"/>\n"
            let changes = row.pattern.transitions(to: span)
            for (i, change) in changes.enumerated() where change.on {
                let end = i + 1 < changes.count ? changes[i + 1].at : span
                let x = labelWidth + change.at.milliseconds * scale
                let w = max(1, (end - change.at).milliseconds * scale)
                svg += "<rect x=\"\(format(x))\" y=\"\(format(y + 4))\" width=\"\(format(w))\" height=\"16\" fill=\"\(row.color)\"/>\n"
            }
        }
        let axis = top + rowHeight * Double(rows.count) + 14
        let seconds = Int(span.milliseconds / 1000)
        for second in 0...seconds {
            let x = labelWidth + Double(second) * 1000 * scale
            svg += "<line x1=\"\(format(x))\" y1=\"\(format(top))\" x2=\"\(format(x))\" y2=\"\(format(axis - 10))\" stroke=\"#999\" stroke-width=\"0.5\"/>\n"
            svg += "<text x=\"\(format(x - 4))\" y=\"\(format(axis))\">\(second)s</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func format(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return tenths % 10 == 0 ? String(tenths / 10) : "\(tenths / 10).\(abs(tenths % 10))"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
