import Hummingbird
import PimeshAgent
import PimeshCore
import PimeshServer
import Synchronization

/// Bounds what a holder of the join token can make the lead keep (docs/operations.md, "Bounds"):
/// registrations per second (429) and registered agents (507). Registrations in flight count
/// against the limit, so that a burst cannot overshoot it between the check and the insert.
final class RegistrationGate: Sendable {
    struct Admission {
        fileprivate let gate: RegistrationGate

        func end() {
            gate.state.withLock { $0.inFlight -= 1 }
        }
    }

    private struct State {
        var bucket: TokenBucket
        var inFlight = 0
    }

    let maxRegistered: Int
    let perSecond: Int
    private let state: Mutex<State>

    init(maxRegistered: Int, perSecond: Int, burst: Int) {
        self.maxRegistered = maxRegistered
        self.perSecond = perSecond
        state = Mutex(State(bucket: TokenBucket(ratePerSecond: Double(perSecond), burst: Double(burst))))
    }

    /// What a registration past `agents.max_registered` is told, and a new supervised manifest.
    var fullMessage: String {
        "the lead holds \(maxRegistered) agents, its limit (agents.max_registered); remove departed ones with `pimesh agents remove NAME`"
    }

    private func isFull(registered: Int, inFlight: Int) -> Bool {
        registered + inFlight >= maxRegistered
    }

    /// Whether one more agent, registered by the lead itself (a new supervised manifest), would
    /// pass `agents.max_registered`; registrations in flight count, as in `admit`.
    func isFull(registered: () -> Int) -> Bool {
        state.withLock { isFull(registered: registered(), inFlight: $0.inFlight) }
    }

    /// `registered` is read under the gate's lock, so that a registration finishing meanwhile
    /// is counted either as registered or as in flight, never as neither.
    func admit(registered: () -> Int, now: Instant) throws(APIError) -> Admission {
        enum Refusal { case rate(Duration), full }
        let refusal: Refusal? = state.withLock { state in
            if isFull(registered: registered(), inFlight: state.inFlight) { return .full }
            if let wait = state.bucket.take(at: now) { return .rate(wait) }
            state.inFlight += 1
            return nil
        }
        switch refusal {
        case nil:
            return Admission(gate: self)
        case .full:
            throw APIError(status: .insufficientStorage, message: fullMessage, field: "name")
        case .rate(let wait):
            throw APIError(
                status: .tooManyRequests,
                message: "more than \(perSecond) registrations a second after a burst (agents.registrations_per_s, agents.registration_burst); retry in \(Int(wait.milliseconds)) ms",
                retryAfterSeconds: max(1, Int((wait.milliseconds / 1000).rounded(.up))))
        }
    }
}
