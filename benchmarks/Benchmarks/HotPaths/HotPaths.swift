import Benchmark
import PimeshAgent
import PimeshCore

// The core's parts of the lead's hot paths, 1,000 calls per iteration, setup outside the
// measurement. Allocations are checked exactly against Thresholds/ and wall clock only for a
// five-fold slowdown (a busy machine varies); the static check compares p90. What the runtime
// adds around them (the registry's lock and lookups, building the candidates) is not here: the
// benchmarks see only the public PimeshCore and PimeshAgent.
let benchmarks: @Sendable () -> Void = {
    let configuration = Benchmark.Configuration(
        metrics: [.mallocCountTotal, .wallClock], warmupIterations: 10, scalingFactor: .kilo,
        maxDuration: .seconds(2), maxIterations: 1_000,
        thresholds: [
            // A hot path that starts to allocate is a regression however small.
            .mallocCountTotal: .init(absolute: [.p90: 0]),
            // Time is noisy on a shared machine (a few ns per call swing by 80 %): only a
            // five-fold slowdown, such as a loop gone quadratic, fails.
            .wallClock: .init(relative: [.p90: 400]),
        ])
    var generator = SplitMix64(seed: 14)

    // One signed v1 heartbeat as it arrives: decode, then the HMAC over its signed part.
    let secret = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
    let tag = HeartbeatTag(secret: secret)
    let datagram = tag.seal(
        HeartbeatDatagram(
            state: .ready, agentID: AgentID.random(using: &generator), iteration: 42, timestampMs: 1_800_000_000_000, queueDepth: 3,
            progress: 7))
    Benchmark("heartbeat-decode-hmac", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            datagram.withUnsafeBytes { bytes in
                guard case .heartbeat(let decoded) = HeartbeatDatagram.decode(bytes) else { fatalError("a sealed heartbeat decodes") }
                blackHole(tag.verifies(decoded, bytes: bytes))
            }
        }
    }

    let admission = HeartbeatAdmission()
    // The replay and clock-skew rule alone (the registry's lookup around it is not in the core).
    Benchmark("admission-rule", configuration: configuration) { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(
                admission.check(
                    iteration: UInt64(index + 2), lastIteration: UInt64(index + 1), timestampMs: 1_800_000_000_000 + Int64(index),
                    nowWallMs: 1_800_000_000_100))
        }
    }

    Benchmark("impedance-update", configuration: configuration) { benchmark in
        var tracker = ImpedanceTracker(agentClass: .local)
        var now = Instant(nanoseconds: 1_000_000_000)
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            now = now + .milliseconds(250)
            tracker.recordHeartbeat(at: now, oneWayLatencyMs: 2 + Double(index % 7), queueDepth: index % 4)
        }
        blackHole(tracker)
    }

    // Ranking 1,000 READY candidates of mixed classes and load for one task (the candidates
    // themselves are built by the registry, outside the core).
    let candidates = (0..<1_000).map { index in
        RouteCandidate(
            agentClass: AgentClass.allCases[index % AgentClass.allCases.count], latencyMs: Double(index % 50) + 1,
            drift: Double(index % 9) / 10, queueDepth: index % 5, reliability: index % 17 == 0 ? 0.5 : 1)
    }
    let router = TaskRouter()
    Benchmark("route-rank-1000", configuration: configuration) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(router.route(candidates, payloadWeight: 1, deadlineMs: nil, now: Instant(nanoseconds: 5_000_000_000)))
        }
    }

    Benchmark("phi-accrual", configuration: configuration) { benchmark in
        var detector = PhiAccrualDetector()
        var now = Instant(nanoseconds: 1_000_000_000)
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            now = now + .milliseconds(245 + Int64(index % 11))
            detector.heartbeat(at: now)
            blackHole(detector.phi(at: now + .milliseconds(100)))
        }
    }
}
