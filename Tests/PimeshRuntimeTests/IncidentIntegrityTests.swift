import Glibc
import Logging
import PimeshCore
import PimeshStore
import Testing
import PimeshTestSupport

@testable import PimeshRuntime

/// The health tick feeds the incident triggers only when something changed or every 500 ms; an
/// integrity problem that came and went between two observations must still reach them.
@Suite struct IncidentIntegrityTests {
    @Test func aStoreFailureClearedBeforeTheNextObservationStillOpensAnIncident() throws {
        let directory = Scratch.directory("pimesh-integrity")
        let writer = StoreWriter(database: try Database(path: directory + "/i.db"), commitInterval: .milliseconds(50), logger: Logger(label: "test"))
        let incidents = try IncidentService.open(
            settings: .init(directory: directory), writer: writer, audit: nil, nodeID: "node-0123456789abcdef", logger: Logger(label: "test"))
        #expect(!incidents.hasUnseenIntegrityFailure)
        incidents.setIntegrity("store", failing: "a store commit failed")
        incidents.setIntegrity("store", failing: nil)
        #expect(incidents.hasUnseenIntegrityFailure)
        incidents.observe(IncidentObservation(agents: []), at: Instant(nanoseconds: 1_000_000_000))
        #expect(incidents.open.contains { $0.causes.contains("integrity:store") }, "\(incidents.open.map(\.causes))")
        #expect(!incidents.hasUnseenIntegrityFailure)
    }
}
