import PimeshSystem
import Synchronization
import Testing

@testable import PimeshRuntime

/// The lead's observers (task outcomes, health events, incident changes, snapshot integrity)
/// are called for as long as the lead runs. Kept as bare optional functions in a `Mutex`, each
/// call wrapped the function in two more thunks: a lead slowed with every task and, tens of
/// thousands of calls later, overflowed its stack (PimeshSystem.Callback). Before the fix this
/// test crashed the test process with that overflow; it asserts that every call still arrives.
@Suite struct ObserverTests {
    @Test func aHealthEventObserverIsStillCalledAfterTwoHundredThousandEvents() {
        let events = HealthEventLog(capacity: 16)
        let seen = Mutex(0)
        events.observe { _, _, _, _ in seen.withLock { $0 += 1 } }
        for index in 0..<200_000 {
            events.append(kind: "exited", agent: "agent-\(index % 7)", detail: "code \(index)", atMs: Int64(index))
        }
        #expect(seen.withLock { $0 } == 200_000)
        #expect(events.newestSequence == 200_000)
    }
}
