import Foundation
import Testing

/// The seed-rule table is in docs/impedance.md (beside the formulas) and docs/operations.md
/// (beside what an operator does about them): two copies of one table, so a test keeps them one.
@Suite struct SeedRuleTableTests {
    func table(in file: String) throws -> [Substring] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/" + file), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let start = lines.firstIndex(where: { $0.hasPrefix("| rule | seed | value | lives in | note |") }) else { return [] }
        return Array(lines[start...].prefix { $0.hasPrefix("|") })
    }

    @Test func operationsShowsTheSameTableAsImpedance() throws {
        let impedance = try table(in: "impedance.md")
        #expect(impedance.count > 30, "the table is in docs/impedance.md")
        // Links in the impedance copy are relative to docs/, as are the operations copy's.
        #expect(try table(in: "operations.md") == impedance)
    }
}
