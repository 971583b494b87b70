import Glibc
import PimeshAgent
import PimeshCore
import PimeshSystem
import Testing
import PimeshTestSupport

@testable import PimeshRuntime

/// playbooks.d is the operator's to grow: its bounds (docs/incidents.md) are hit here, and what
/// is past them is refused by name while the rest loads.
@Suite struct PlaybookFileTests {
    static func playbook(id: String, steps: Int = 1, padding: Int = 0) -> String {
        let step = { (index: Int) in #"{"name": "look\#(index)", "action": "assess", "timeout_s": 5}"# }
        let title = padding > 0 ? #""title": "\#(String(repeating: "x", count: min(padding, 200)))", "# : ""
        let filler = padding > 200 ? String(repeating: " ", count: padding) : ""
        return #"{"id": "\#(id)", \#(title)"when": {"causes": ["agent_down:"]}, "slo_s": 60, "steps": [\#((0..<steps).map(step).joined(separator: ", "))]}\#(filler)"#
    }

    static func directory() throws -> String {
        Scratch.directory("pimesh-playbooks")
    }

    static func remove(_ dir: String) {
        for name in (try? FileIO.list(dir)) ?? [] { unlink(dir + "/" + name) }
        rmdir(dir)
    }

    @Test func atMostSixtyFourFilesAreRead() throws {
        let dir = try Self.directory()
        defer { Self.remove(dir) }
        for index in 0..<(PlaybookFile.maxFiles + 1) {
            try FileIO.writeAtomically(path: dir + "/p\(String(index + 100)).json", bytes: Array(Self.playbook(id: "p\(index)").utf8))
        }
        let (playbooks, refused) = PlaybookFile.loadDirectory(dir)
        #expect(playbooks.count == 64)
        #expect(refused.count == 1)
        #expect(refused.first?.description.contains("more than 64 playbooks") == true)
        #expect(refused.first?.description.contains("p164.json") == true)
    }

    @Test func aFileOverSixtyFourKiBAndAPlaybookOverThirtyTwoStepsAreRefusedByName() throws {
        let dir = try Self.directory()
        defer { Self.remove(dir) }
        try FileIO.writeAtomically(path: dir + "/big.json", bytes: Array(Self.playbook(id: "big", padding: 65 << 10).utf8))
        try FileIO.writeAtomically(path: dir + "/long.json", bytes: Array(Self.playbook(id: "long", steps: Playbook.maxSteps + 1).utf8))
        try FileIO.writeAtomically(path: dir + "/fine.json", bytes: Array(Self.playbook(id: "fine", steps: Playbook.maxSteps).utf8))
        let (playbooks, refused) = PlaybookFile.loadDirectory(dir)
        #expect(playbooks.map(\.id) == ["fine"])
        #expect(playbooks.first?.steps.count == 32)
        let reasons = refused.map(\.description).sorted()
        #expect(reasons.count == 2, "\(reasons)")
        #expect(reasons.contains { $0.contains("big.json") && $0.contains("larger than 64 KiB") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("long.json") && $0.contains("has 33 steps; at most 32") }, "\(reasons)")
    }

    /// A playbook restarts, freezes and rolls agents back: one that others could write, or in a
    /// directory others could write into, is refused as a manifest is; a FIFO is not waited on.
    @Test func playbooksOthersCouldWriteAndFIFOsAreRefused() throws {
        let dir = try Self.directory()
        defer { Self.remove(dir) }
        try FileIO.writeAtomically(path: dir + "/fine.json", bytes: Array(Self.playbook(id: "fine").utf8))
        try FileIO.writeAtomically(path: dir + "/loose.json", bytes: Array(Self.playbook(id: "loose").utf8), mode: 0o666)
        chmod(dir + "/loose.json", 0o666)
        #expect(mkfifo(dir + "/fifo.json", 0o600) == 0)
        let (playbooks, refused) = PlaybookFile.loadDirectory(dir)
        #expect(playbooks.map(\.id) == ["fine"])
        let reasons = refused.map(\.description)
        #expect(reasons.contains { $0.contains("loose.json") && $0.contains("not trusted") && $0.contains("writable by group or others") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("fifo.json") && $0.contains("a FIFO, not a regular file") }, "\(reasons)")
        chmod(dir, 0o777)
        defer { chmod(dir, 0o700) }
        let open = PlaybookFile.loadDirectory(dir)
        #expect(open.playbooks.isEmpty && open.refused.map(\.file) == [dir], "\(open.refused)")
    }
}
