import PimeshRelease
import PimeshSystem
import Testing

@testable import PimeshRuntime

/// A release update reads the /readyz answer the lead writes: a lead whose store fails is a lead
/// that started (the full card is not the release's fault); one still starting is not.
@Suite struct ReadinessTests {
    func answer(_ readiness: LeadState.Readiness) throws -> [UInt8] {
        try APICoding.encode(readiness)
    }

    @Test func aLeadWhoseStoreFailsHasStartedForAReleaseUpdate() throws {
        let failing = try answer(.init(status: "store_failing", error: "store commits fail: the store is full", failingForS: 3.5))
        #expect(String(decoding: failing, as: UTF8.self).contains(#""failing_for_s":3.5"#))
        #expect(ReleaseUpdater.storeFails(status: 503, readyz: failing))
    }

    @Test func aLeadStillStartingOrAnAnswerThatIsNotTheLeadsHasNot() throws {
        #expect(!ReleaseUpdater.storeFails(status: 503, readyz: try answer(.init(status: "starting"))))
        #expect(!ReleaseUpdater.storeFails(status: 503, readyz: Array("<html>store_failing</html>".utf8)))
        #expect(!ReleaseUpdater.storeFails(status: 500, readyz: try answer(.init(status: "store_failing"))))
        #expect(!ReleaseUpdater.storeFails(status: 503, readyz: []))
    }
}
